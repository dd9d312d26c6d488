"""Upstream rate limits: one Retry-After pauses the container, waits bounded by time, PORTKEY_MAX_RPS.

The stand-in's answers are scripted; what is checked is when requests arrive at it. Arrival gaps are
only ever checked from below: a gate or a pace guarantees a minimum, never a maximum.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator

import pytest

from devstack.lambda_events import sqs_event
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import FunctionLogs, Invoker, failed_ids

RATE_LIMITED = Reply(status=429, headers={"Retry-After": "1"})


@pytest.fixture
def release_after_first_429(portkey: PortkeyStandIn) -> Iterator[threading.Event]:
    """An event set as soon as the stand-in has answered a 429 (bounded wait, joined at the end)."""
    released = threading.Event()

    def watch() -> None:
        portkey.wait_for(lambda: any(request.status == 429 for request in portkey.recorded()), timeout=10)
        released.set()

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    yield released
    released.set()
    watcher.join(timeout=11)


def test_one_retry_after_holds_every_worker(
    invoke: Invoker, portkey: PortkeyStandIn, release_after_first_429: threading.Event
) -> None:
    # Given four workers on four threads: thread_a is answered 429 + Retry-After: 1 while the first
    # updates of b, c and d are still in flight (held until that 429 is on its way, then 300 ms more)
    portkey.script("thread_a", RATE_LIMITED)
    for thread in ("thread_b", "thread_c", "thread_d"):
        portkey.script(thread, Reply(hold=release_after_first_429, delay=0.3))
    # (one request per thread per batch: the later requests are threads e, f and g, queued behind)
    bodies = [
        {"thread_id": thread, "metadata": {"v": "1"}}
        for thread in ("thread_a", "thread_b", "thread_c", "thread_d", "thread_e", "thread_f", "thread_g")
    ]

    # When the batch is processed
    assert invoke(sqs_event(bodies)) == {"batchItemFailures": []}

    # Then no worker started a request within the second the 429 asked for: not thread_a's retry,
    # and not those of e, f and g, although workers were free long before
    requests = portkey.recorded()
    refused = next(request for request in requests if request.status == 429)
    later = [request for request in requests if request.sequence > 3]
    assert len(later) == 4
    assert all(request.arrived_at - refused.arrived_at >= 1.0 for request in later)


def test_rate_limit_waits_are_bounded_by_time_not_attempts_and_keep_the_lane_order(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given MAX_ATTEMPTS=1, and a thread whose first update is refused twice with Retry-After: 1
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    portkey.script("thread_a", RATE_LIMITED, RATE_LIMITED)
    event = sqs_event(
        [{"thread_id": "thread_a", "metadata": {"v": "1"}}, {"thread_id": "thread_a", "metadata": {"v": "2"}}]
    )

    # When the batch is processed with 30 s left
    response = invoke(event)

    # Then the update kept waiting and retrying within the invocation and was applied on its third
    # attempt; the thread's two updates shared that one request, so the thread ends with v=2
    assert response == {"batchItemFailures": []}
    assert [(r.status, r.json) for r in portkey.requests_for("thread_a")] == [
        (429, {"metadata": {"v": "2"}}),
        (429, {"metadata": {"v": "2"}}),
        (200, {"metadata": {"v": "2"}}),
    ]
    first = next(line for line in logs.lines() if line.get("message") == "update success")
    assert first["attempts"] == 3
    stored = portkey.thread("thread_a")
    assert stored is not None
    assert stored["metadata"] == {"v": "2"}


def test_max_attempts_still_bounds_failures_that_do_not_ask_for_a_pause(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_ATTEMPTS=2 and a thread answered 503 without Retry-After
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    portkey.always("thread_a", Reply(status=503))
    event = sqs_event([{"thread_id": "thread_a"}])

    # When it is processed, then it is handed back after two attempts
    assert failed_ids(invoke(event)) == {event["Records"][0]["messageId"]}
    assert len(portkey.requests_for("thread_a")) == 2


def test_a_gate_beyond_the_deadline_hands_the_rest_back_without_waiting(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given one worker and a 429 asking for 20 s, in an invocation with 5 s left
    monkeypatch.setenv("MAX_CONCURRENCY", "1")
    portkey.script("thread_a", Reply(status=429, headers={"Retry-After": "20"}))
    event = sqs_event([{"thread_id": "thread_a"}, {"thread_id": "thread_b"}, {"thread_id": "thread_c"}])

    # When the batch is processed
    response = invoke(event, timeout_s=5)

    # Then only the refused request was sent: the others were not started behind a closed gate,
    # and all three go back to the queue
    assert failed_ids(response) == {record["messageId"] for record in event["Records"]}
    assert len(portkey.requests) == 1


def test_the_paced_rate_is_a_metric_and_its_changes_are_logged(
    invoke: Invoker,
    portkey: PortkeyStandIn,
    logs: FunctionLogs,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given one worker (always busy, so the container's own rate is what is refused), and a thread
    # answered 429 + Retry-After: 1 once
    monkeypatch.setenv("MAX_CONCURRENCY", "1")
    portkey.script("thread_a", RATE_LIMITED)
    capsys.readouterr()

    # When a batch is processed
    assert invoke(sqs_event([{"thread_id": "thread_a"}, {"thread_id": "thread_b"}])) == {
        "batchItemFailures": []
    }

    # Then the invocation's metrics carry the paced rate, and DEBUG lines say why it changed
    documents = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    [emitted] = [document["PortkeyPacedRate"] for document in documents if "PortkeyPacedRate" in document]
    [paced] = emitted if isinstance(emitted, list) else [emitted]
    messages = {line["message"]: line for line in logs.lines() if line["level"] == "DEBUG"}
    assert "upstream rate limit: every request waits for the gate" in messages
    assert 0 < messages["upstream rate limit: rate limited"]["rate_rps"] <= paced


def test_portkey_max_rps_paces_the_container(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given PORTKEY_MAX_RPS=10 and four workers
    monkeypatch.setenv("PORTKEY_MAX_RPS", "10")
    bodies = [{"thread_id": f"thread_{index}"} for index in range(6)]

    # When six updates are processed
    assert invoke(sqs_event(bodies)) == {"batchItemFailures": []}

    # Then they were started 100 ms apart (allowing for how long the first took to arrive), not together
    arrivals = sorted(request.arrived_at for request in portkey.requests)
    assert arrivals[-1] - arrivals[0] >= 5 * 0.1 * 0.9
