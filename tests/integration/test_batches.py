"""Batches: concurrency bounded by MAX_CONCURRENCY, per-thread order, FIFO groups, large batches."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from devstack.lambda_events import sqs_event
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import AwsResources, Invoker, failed_ids


def ids(event: dict[str, Any], *positions: int) -> set[str]:
    return {event["Records"][position]["messageId"] for position in positions}


def test_updates_of_one_thread_are_applied_in_order_while_others_run(
    invoke: Invoker, portkey: PortkeyStandIn
) -> None:
    # Given three updates of one thread, the first answered slowly, and other threads in between
    portkey.script("thread_a", Reply(delay=0.3))
    bodies = [
        {"thread_id": "thread_a", "metadata": {"v": "1"}},
        {"thread_id": "thread_b", "metadata": {"v": "1"}},
        {"thread_id": "thread_a", "metadata": {"v": "2"}},
        {"thread_id": "thread_c", "metadata": {"v": "1"}},
        {"thread_id": "thread_a", "metadata": {"v": "3"}},
    ]

    # When the batch is processed
    assert invoke(sqs_event(bodies)) == {"batchItemFailures": []}

    # Then thread_a's three updates went out as one request holding the newest value, and the other
    # threads did not wait for its slow answer
    thread_a = portkey.requests_for("thread_a")
    assert [request.json for request in thread_a] == [{"metadata": {"v": "3"}}]
    others = portkey.requests_for("thread_b") + portkey.requests_for("thread_c")
    assert len(others) == 2
    assert all(request.arrived_at < thread_a[0].arrived_at + 0.3 for request in others)
    stored = portkey.thread("thread_a")
    assert stored is not None
    assert stored["metadata"] == {"v": "3"}


def test_a_transient_failure_holds_back_the_rest_of_its_thread(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given thread_a's first update fails transiently
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    portkey.script("thread_a", Reply(status=503))
    event = sqs_event(
        [
            {"thread_id": "thread_a", "metadata": {"v": "1"}},
            {"thread_id": "thread_b", "metadata": {"v": "1"}},
            {"thread_id": "thread_a", "metadata": {"v": "2"}},
            {"thread_id": "thread_a", "metadata": {"v": "3"}},
        ]
    )

    # When the batch is processed
    response = invoke(event)

    # Then the later thread_a updates are not sent and go back with it, in order; thread_b is applied
    assert failed_ids(response) == ids(event, 0, 2, 3)
    assert len(portkey.requests_for("thread_a")) == 1
    assert len(portkey.requests_for("thread_b")) == 1


def test_a_dead_lettered_update_does_not_block_its_thread(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given thread_a's first update is rejected (in the shared request, and again alone)
    portkey.script("thread_a", Reply(status=400), Reply(status=400))
    event = sqs_event(
        [{"thread_id": "thread_a", "metadata": {"v": "1"}}, {"thread_id": "thread_a", "metadata": {}}]
    )

    # When the batch is processed
    response = invoke(event)

    # Then the shared request was refused, each update was sent alone: the first is dead-lettered
    # and the second still applied
    assert response == {"batchItemFailures": []}
    assert [letter["message_id"] for letter in aws.dead_letters()] == [event["Records"][0]["messageId"]]
    assert [request.status for request in portkey.requests_for("thread_a")] == [400, 400, 200]


def test_fifo_failure_fails_the_rest_of_its_group_only(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a FIFO batch: group g1 has a transient failure in its second message, group g2 is healthy
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    portkey.script("thread_fail", Reply(status=500))
    event = sqs_event(
        [
            {"thread_id": "thread_1", "metadata": {"v": "1"}},
            {"thread_id": "thread_fail"},
            {"thread_id": "thread_2"},
            {"thread_id": "thread_3"},
            {"thread_id": "thread_4", "metadata": {"v": "2"}},
        ],
        group_ids=["g1", "g1", "g2", "g1", "g2"],
    )

    # When the batch is processed
    response = invoke(event)

    # Then the failed message and everything after it in g1 go back (even other threads); g2 is applied
    assert failed_ids(response) == ids(event, 1, 3)
    assert portkey.requests_for("thread_3") == []
    assert len(portkey.requests_for("thread_2")) == 1
    assert [request.json for request in portkey.requests_for("thread_1")] == [{"metadata": {"v": "1"}}]
    assert [request.json for request in portkey.requests_for("thread_4")] == [{"metadata": {"v": "2"}}]


def test_requests_in_flight_never_exceed_max_concurrency(
    function_env: dict[str, str], portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given MAX_CONCURRENCY=4 and a Portkey that holds every answer until released
    monkeypatch.setenv("MAX_CONCURRENCY", "4")
    release = threading.Event()
    portkey.script(None, *[Reply(hold=release) for _ in range(12)])
    event = sqs_event([{"thread_id": f"thread_{index}"} for index in range(12)])
    result: dict[str, Any] = {}
    worker = threading.Thread(target=lambda: result.update(response=Invoker()(event)))

    # When the batch runs
    worker.start()
    try:
        # Then exactly four requests are in flight while the answers are held
        assert portkey.wait_for_in_flight(4)
        assert not portkey.wait_for(lambda: portkey.in_flight > 4, timeout=0.3)
    finally:
        release.set()
        worker.join(timeout=30)
    assert result["response"] == {"batchItemFailures": []}
    assert portkey.max_in_flight == 4
    assert len(portkey.requests) == 12


def test_connections_are_reused_across_invocations(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    # Given a warm container (MAX_CONCURRENCY=4)
    # When three batches of eight updates are processed
    for batch in range(3):
        invoke(sqs_event([{"thread_id": f"thread_{batch}_{index}"} for index in range(8)]))

    # Then keep-alive connections from one pool served them all
    assert len(portkey.requests) == 24
    assert portkey.connections_opened <= 4


def test_thousand_record_batch_reports_exactly_the_failures(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given 1,000 updates over 250 threads: some threads are gone upstream, some keep failing
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    monkeypatch.setenv("MAX_CONCURRENCY", "16")
    gone = {f"thread_{index}" for index in range(0, 250, 25)}
    failing = {f"thread_{index}" for index in range(5, 250, 25)}
    for thread_id in gone:
        portkey.always(thread_id, Reply(status=404))
    for thread_id in failing:
        portkey.always(thread_id, Reply(status=503))
    bodies = [{"thread_id": f"thread_{index % 250}", "metadata": {"n": str(index)}} for index in range(1000)]
    event = sqs_event(bodies)

    # When the batch is processed
    response = invoke(event, timeout_s=120)

    # Then exactly the failing threads' records are handed back, the gone ones are dead-lettered,
    # and every other thread ends with its last update
    expected_failures = {
        record["messageId"]
        for record, body in zip(event["Records"], bodies, strict=True)
        if body["thread_id"] in failing
    }
    assert failed_ids(response) == expected_failures
    assert len(aws.dead_letters(max_messages=100)) == 4 * len(gone)
    for index in range(250):
        thread_id = f"thread_{index}"
        if thread_id not in gone | failing:
            stored = portkey.thread(thread_id)
            assert stored is not None
            assert stored["metadata"] == {"n": str(index + 750)}


def test_fifo_invalid_message_after_a_failure_stays_with_its_group(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a FIFO group whose first update fails transiently and whose second message is invalid
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    portkey.script("thread_1", Reply(status=503))
    event = sqs_event(
        [{"thread_id": "thread_1"}, "not json", {"thread_id": "thread_2"}], group_ids=["g1", "g1", "g2"]
    )

    # When the batch is processed
    response = invoke(event)

    # Then the invalid message goes back with its group (to be dead-lettered once, in order, on redelivery)
    # instead of being dead-lettered now and also reported as a failure by the FIFO processor
    assert failed_ids(response) == ids(event, 0, 1)
    assert aws.dead_letters() == []
    assert len(portkey.requests_for("thread_2")) == 1
