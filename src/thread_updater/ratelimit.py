"""The container's traffic to Portkey: one limiter every worker passes before it sends a request.

Two things decide when a request may start, for every worker of the container at once:

* **the gate**: a 429 or 503 carrying ``Retry-After`` closes it until that time, so no worker
  starts a request the upstream has just said it will refuse. Each waiting worker is released with
  a little jitter, and then at the paced rate below, so they do not stampede back together;
* **pacing**: after such an answer the container paces its requests at the success rate it had just
  observed (the first time a little below it), then probes upwards by about 5 % a second while the
  upstream keeps accepting. ``PORTKEY_MAX_RPS`` caps the rate from the start. Once the paced rate is
  more than the workers could send anyway, the adaptive pacing stops.

Pacing the *rate* rather than AIMD on the number of requests in flight: rate limits count requests
per unit of time, and the in-flight limit that matches a rate depends on the answer latency (at
50 ms an answer, 20 requests a second is one request in flight); halving and growing an in-flight
limit overshoots every time it grows by one. ``docs/performance.md`` has the measured comparison.

Hand-rolled because nothing in the runtime dependencies shares a limit between threads: urllib3's
``Retry`` honours ``Retry-After`` for the one request that received it, inside that request.
"""

from __future__ import annotations

import random
import threading
import time
from collections import deque
from collections.abc import Callable

from thread_updater.observability import logger, metrics

__all__ = ["RATE_LIMIT_STATUSES", "UpstreamLimiter", "is_rate_limited"]

RATE_LIMIT_STATUSES = frozenset({429, 503})
# Successes counted over this window give the rate the upstream just accepted.
SUCCESS_WINDOW_S = 1.0
# Pace a little below the observed rate: the window may include the tail of an initial burst.
DECREASE = 0.9
# Each success while paced adds this many requests per second: about +5 % per second of traffic.
PROBE_STEP_RPS = 0.05
MIN_RATE_RPS = 0.5
# Waiting workers leave the gate spread over this share of its closure (at most the cap).
JITTER_SHARE = 0.1
JITTER_CAP_S = 0.5
# A Retry-After further out than this (a clock a day ahead, say) closes the gate this long only: one
# request then asks again, and the upstream closes it again if it meant it.
GATE_CAP_S = 60.0
_LATENCY_WEIGHT = 0.2  # exponentially weighted mean of answer times


def is_rate_limited(status: int | None, retry_after_s: float | None) -> bool:
    """A 429 or 503 with a positive ``Retry-After``: the upstream asks the container for a pause.

    A 429 without one (or with ``Retry-After: 0``) is retried like any transient failure, by its own
    request: it does not say how long to wait, and slowing the container down at every such answer
    would, against refusals that do not depend on the rate (a flaky upstream), ratchet the pace down
    for nothing (the soak, ``tests/tooling/test_soak.py``, injects exactly that).
    """
    return status in RATE_LIMIT_STATUSES and retry_after_s is not None and retry_after_s > 0


class UpstreamLimiter:
    """Container-wide: created once per container and shared by every worker (thread-safe).

    ``clock`` and ``sleep`` are ``time.monotonic`` and ``time.sleep`` outside tests.
    """

    def __init__(
        self,
        *,
        max_concurrency: int = 1,
        max_rps: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._max_concurrency = max_concurrency
        self._cap = max_rps
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._rate: float | None = max_rps  # requests per second; None: not paced
        self._next_slot = float("-inf")
        self._gate_until = float("-inf")
        self._jitter_s = 0.0
        self._decreased_at = float("-inf")
        self._successes: deque[float] = deque()
        self._in_flight = 0
        self._saturated_at = float("-inf")  # when every worker last had a request in flight
        self._latency_s: float | None = None

    @property
    def rate(self) -> float | None:
        """The paced rate in requests per second, or None when requests are not paced."""
        return self._rate

    def gate_open_at(self) -> float:
        """The ``clock()`` time the gate opens (in the past when it is open)."""
        return self._gate_until

    def acquire(self, latest_start: float) -> bool:
        """Wait until this worker may send a request; False (at once) if that is after ``latest_start``.

        The slot is reserved before sleeping, so waiting workers leave one by one at the paced rate.
        A gate closed while we slept sends us round again; the deadline bounds the rounds.
        """
        while True:
            with self._lock:
                start = self._reserve(self._clock(), latest_start)
            if start is None:
                return False
            if (wait := start - self._clock()) > 0:
                self._sleep(wait)
            with self._lock:
                if self._gate_until <= start:
                    self._in_flight += 1
                    if self._in_flight >= self._max_concurrency:
                        self._saturated_at = start
                    return True

    def _reserve(self, now: float, latest_start: float) -> float | None:
        start = now
        if now < self._gate_until:
            if self._gate_until > latest_start:
                return None
            start = self._gate_until + random.uniform(0.0, self._jitter_s)  # noqa: S311 - jitter
        if self._rate is not None:
            start = max(start, self._next_slot)
        if start > latest_start:
            return None
        if self._rate is not None:
            self._next_slot = start + 1.0 / self._rate
        return start

    def settle(self, sent_at: float, *, status: int | None, retry_after_s: float | None) -> None:
        """Learn from one answer (``status`` None: no answer arrived) to a request sent at ``sent_at``."""
        now = self._clock()
        with self._lock:
            self._in_flight = max(0, self._in_flight - 1)
            self._latency_s = (
                now - sent_at
                if self._latency_s is None
                else self._latency_s + _LATENCY_WEIGHT * (now - sent_at - self._latency_s)
            )
            if is_rate_limited(status, retry_after_s) and retry_after_s is not None:
                if sent_at >= self._decreased_at and self._pushing(now):  # once per episode
                    self._slow_down(now)
                self._close_gate(now, retry_after_s)
            elif status is not None:
                self._successes.append(now)
                while self._successes[0] < now - SUCCESS_WINDOW_S:  # memory stays flat
                    self._successes.popleft()
                self._probe()

    def _pushing(self, now: float) -> bool:
        """Whether this container's own rate can be what the upstream refuses: it is paced already, or
        it had every worker busy within the last second. A container with idle workers sends what its
        batches hold; pacing it at that would only slow it down (the gate still pauses it)."""
        return self._rate is not None or now - self._saturated_at <= SUCCESS_WINDOW_S

    def _close_gate(self, now: float, retry_after_s: float) -> None:
        until = now + min(retry_after_s, GATE_CAP_S)
        if until > self._gate_until:
            self._gate_until = until
            self._jitter_s = min(JITTER_CAP_S, JITTER_SHARE * retry_after_s)
            logger.debug(
                "upstream rate limit: every request waits for the gate",
                extra={"gate_wait_s": round(retry_after_s, 3)},
            )

    def _slow_down(self, now: float) -> None:
        """Pace at the rate the upstream just accepted: a margin below it when not paced yet, else
        never above the current pace.

        Accepted: the answers of the last second, plus the requests still in flight (a refusal comes
        back at once while an accepted request takes its latency, so most of what the upstream just
        accepted is still on its way back). The margin is taken once only: a container whose pace
        is set by its own demand (a few records per batch) would otherwise lose it at every refusal
        and ratchet down to nothing against an upstream that refuses now and then whatever the rate.
        """
        resumed_at = self._gate_until if self._gate_until <= now else float("-inf")
        since = max(now - SUCCESS_WINDOW_S, resumed_at)
        accepted = sum(1 for answered_at in self._successes if answered_at >= since)
        span = now - since
        if self._rate is not None and span < SUCCESS_WINDOW_S / 2:
            observed = self._rate
        else:
            observed = (accepted + self._in_flight) / max(span, SUCCESS_WINDOW_S / 2)
        pace = max(MIN_RATE_RPS, observed * DECREASE if self._rate is None else min(observed, self._rate))
        self._set_rate(min(pace, self._cap) if self._cap is not None else pace, "rate limited")
        self._decreased_at = now

    def _probe(self) -> None:
        if self._rate is None or (self._cap is not None and self._rate >= self._cap):
            return
        rate = self._rate + PROBE_STEP_RPS
        if self._cap is not None:
            rate = min(rate, self._cap)
        elif self._latency_s and rate * self._latency_s > self._max_concurrency:
            self._set_rate(None, "paced above what the workers can send")
            return
        self._rate = rate
        if int(rate) != int(rate - PROBE_STEP_RPS):  # one DEBUG line per whole request per second
            logger.debug("upstream rate limit: probing upwards", extra={"rate_rps": round(rate, 2)})

    def _set_rate(self, rate: float | None, reason: str) -> None:
        previous, self._rate = self._rate, rate
        logger.debug(
            f"upstream rate limit: {reason}",
            extra={
                "rate_rps": None if rate is None else round(rate, 2),
                "previous_rate_rps": None if previous is None else round(previous, 2),
            },
        )

    def record_metric(self) -> None:
        """``PortkeyPacedRate``: the requests per second this container paces at (only while paced)."""
        rate = self._rate
        if rate is not None:
            metrics.add_metric(name="PortkeyPacedRate", unit="Count/Second", value=round(rate, 2))
