"""The container-wide limiter on a simulated clock: the gate, pacing down and up, the static cap.

Workers are played one call at a time on a clock that only moves when the limiter sleeps, so every
decision can be checked exactly, without threads or sockets.
"""

from __future__ import annotations

import itertools

import pytest

from thread_updater.ratelimit import (
    DECREASE,
    JITTER_CAP_S,
    MIN_RATE_RPS,
    PROBE_STEP_RPS,
    UpstreamLimiter,
    is_rate_limited,
)

FAR = 1e9  # a deadline that never binds


class SimulatedTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def sim() -> SimulatedTime:
    return SimulatedTime()


def limiter(sim: SimulatedTime, *, max_rps: float | None = None, workers: int = 1) -> UpstreamLimiter:
    """One worker by default: the simulated requests go one at a time, so that worker is always busy."""
    return UpstreamLimiter(max_concurrency=workers, max_rps=max_rps, clock=sim.clock, sleep=sim.sleep)


def send(
    gate: UpstreamLimiter,
    sim: SimulatedTime,
    *,
    status: int,
    latency: float = 0.0,
    retry_after_s: float | None = None,
) -> None:
    """One request through the limiter, answered ``latency`` later with ``status``."""
    assert gate.acquire(FAR)
    sent_at = sim.now
    sim.now += latency
    gate.settle(sent_at, status=status, retry_after_s=retry_after_s)


def test_rate_limited_answers() -> None:
    assert is_rate_limited(429, 1.0)
    assert is_rate_limited(503, 2.0)
    assert not is_rate_limited(429, None)  # retried by its own request, like any transient failure
    assert not is_rate_limited(429, 0.0)
    assert not is_rate_limited(503, None)  # a plain 503 is a failure, not a request to slow down
    assert not is_rate_limited(503, 0.0)
    assert not is_rate_limited(500, 2.0)
    assert not is_rate_limited(None, None)


def test_refusals_without_retry_after_do_not_slow_the_container(sim: SimulatedTime) -> None:
    # Given an upstream that refuses every tenth request with a bare 429 (or Retry-After: 0)
    gate = limiter(sim)
    for index in range(200):
        if index % 10 == 9:
            send(gate, sim, status=429, retry_after_s=0.0 if index % 20 == 9 else None)
        else:
            send(gate, sim, status=200, latency=0.01)

    # Then nobody waited and nothing is paced: those are retried by their own requests
    assert gate.rate is None
    assert sim.slept == []


def test_an_unlimited_limiter_never_waits(sim: SimulatedTime) -> None:
    gate = limiter(sim)
    for _ in range(100):
        send(gate, sim, status=200)
    assert gate.rate is None
    assert sum(sim.slept) == 0


def test_one_retry_after_holds_every_worker_until_it_expires(sim: SimulatedTime) -> None:
    # Given a 429 with Retry-After: 2 answered to one worker
    gate = limiter(sim)
    assert gate.acquire(FAR)
    gate.settle(sim.now, status=429, retry_after_s=2.0)
    reopens = sim.now + 2.0
    assert gate.gate_open_at() == reopens

    # When sixteen workers ask to send
    starts = []
    for _ in range(16):
        assert gate.acquire(FAR)
        starts.append(sim.now)

    # Then none starts before the gate opens; they leave one by one (jittered, then paced)
    assert min(starts) >= reopens
    assert starts == sorted(starts)
    assert len(set(starts)) == 16
    assert starts[0] <= reopens + JITTER_CAP_S


def test_a_worker_does_not_wait_for_a_gate_that_opens_after_its_deadline(sim: SimulatedTime) -> None:
    gate = limiter(sim)
    assert gate.acquire(FAR)
    gate.settle(sim.now, status=503, retry_after_s=30.0)

    assert not gate.acquire(sim.now + 5.0)
    assert sim.slept == []  # refused at once, without sleeping towards it


def test_a_gate_closed_while_a_worker_waits_for_its_slot_sends_it_round_again(sim: SimulatedTime) -> None:
    # Given a paced limiter whose next slot is later, and a worker sleeping towards it while another
    # worker's request is refused with Retry-After: 3
    closing_at = sim.now + 0.5

    def sleep_and_see_a_429(seconds: float) -> None:
        sim.sleep(seconds)
        if sim.now >= closing_at and gate.gate_open_at() < closing_at:  # once
            gate.settle(closing_at, status=429, retry_after_s=3.0)

    gate = UpstreamLimiter(max_concurrency=16, max_rps=1.0, clock=sim.clock, sleep=sleep_and_see_a_429)
    assert gate.acquire(FAR)

    # When the worker's slot comes up, after the gate closed behind its reservation
    assert gate.acquire(FAR)

    # Then it started only once the gate had opened again
    assert sim.now >= gate.gate_open_at()
    assert sim.now >= closing_at + 3.0


def test_after_a_429_requests_are_paced_at_the_rate_just_accepted(sim: SimulatedTime) -> None:
    # Given one second of traffic: 20 requests accepted at 20 a second, then a 429
    gate = limiter(sim)
    for _ in range(20):
        send(gate, sim, status=200, latency=0.05)
    send(gate, sim, status=429, retry_after_s=1.0)

    # Then the container paces a little below what was accepted, one request per slot
    assert gate.rate == pytest.approx(20 * DECREASE)
    starts = []
    for _ in range(5):
        assert gate.acquire(FAR)
        starts.append(sim.now)
    gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
    assert gaps == pytest.approx([1 / (20 * DECREASE)] * 4)


def test_the_refusals_of_one_burst_slow_down_once(sim: SimulatedTime) -> None:
    # Given paced traffic and a burst of requests all sent before the first refusal came back
    gate = limiter(sim)
    for _ in range(10):
        send(gate, sim, status=200, latency=0.1)
    burst = []
    for _ in range(5):
        assert gate.acquire(FAR)
        burst.append(sim.now)
    sim.now += 0.05

    # When all five are refused
    for sent_at in burst:
        gate.settle(sent_at, status=429, retry_after_s=1.0)

    # Then the rate went down once (not five times)
    assert gate.rate is not None
    assert gate.rate > 5


def test_the_paced_rate_goes_down_and_back_up(sim: SimulatedTime) -> None:
    # Given a container paced at 18/s after a first 429
    gate = limiter(sim)
    for _ in range(20):
        send(gate, sim, status=200, latency=0.05)
    send(gate, sim, status=429, retry_after_s=1.0)
    first = gate.rate
    assert first is not None

    # When, later, the upstream accepts only 5 requests in a second and then refuses one, the rate
    # goes down to that
    sim.now += 5.0
    for _ in range(5):
        send(gate, sim, status=200)
    send(gate, sim, status=429, retry_after_s=1.0)
    lowered = gate.rate
    assert lowered is not None
    assert lowered == pytest.approx(5.0)
    assert lowered < first

    # And while the upstream accepts everything, it probes back up, one step per success
    for _ in range(100):
        send(gate, sim, status=200)
    assert gate.rate == pytest.approx(lowered + 100 * PROBE_STEP_RPS)


def test_pacing_stops_once_it_is_above_what_the_workers_can_send(sim: SimulatedTime) -> None:
    # Given 1 worker, 100 ms answers (at most 10 requests a second), paced at about 9/s
    gate = limiter(sim)
    for _ in range(20):
        send(gate, sim, status=200, latency=0.1)
    send(gate, sim, status=429, retry_after_s=1.0)
    assert gate.rate is not None

    # When the upstream accepts everything for a while
    for _ in range(1000):
        send(gate, sim, status=200, latency=0.1)
        if gate.rate is None:
            break

    # Then the pace was lifted once it was more than 1 request in flight could send
    assert gate.rate is None


def test_a_container_with_idle_workers_is_paused_but_not_paced(sim: SimulatedTime) -> None:
    # Given 16 workers of which only one is ever busy (small batches)
    gate = limiter(sim, workers=16)
    for _ in range(20):
        send(gate, sim, status=200, latency=0.05)

    # When the upstream refuses with Retry-After: 1
    send(gate, sim, status=429, retry_after_s=1.0)

    # Then the gate holds the next request, but no pace is set: the refusal is not this container's rate
    assert gate.acquire(FAR)
    assert sum(sim.slept) >= 1.0
    assert gate.rate is None


def test_a_429_with_no_traffic_to_learn_from_paces_at_the_minimum(sim: SimulatedTime) -> None:
    gate = limiter(sim)
    send(gate, sim, status=429, retry_after_s=1.0)
    assert gate.rate == MIN_RATE_RPS


def test_the_static_cap_paces_from_the_first_request_and_bounds_the_probe(sim: SimulatedTime) -> None:
    # Given PORTKEY_MAX_RPS=5
    gate = limiter(sim, max_rps=5.0)
    assert gate.rate == 5.0

    # When ten requests are sent back to back and all accepted
    starts = []
    for _ in range(10):
        assert gate.acquire(FAR)
        starts.append(sim.now)
        gate.settle(sim.now, status=200, retry_after_s=None)

    # Then they start 200 ms apart and probing never goes above the cap
    assert starts[-1] - starts[0] == pytest.approx(9 / 5.0)
    assert gate.rate == 5.0

    # And a 429 still lowers the rate below the cap
    send(gate, sim, status=429, retry_after_s=1.0)
    assert gate.rate is not None
    assert gate.rate < 5.0
