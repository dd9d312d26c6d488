"""Newest update wins on every path: versions, the state table, superseded updates, leases, heals.

Through the real handler, moto (SQS, DynamoDB) and the Portkey stand-in, whose store is what a
thread really holds at the end. Each case would end on the older update without the state table
(``test_without_the_table_the_older_update_wins`` shows the same sequence going wrong).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from devstack.lambda_events import LocalContext, eventbridge_event, sqs_event, sqs_record
from devstack.poller import lambda_record
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import AwsResources, DrippingProxy, FunctionLogs, Invoker, failed_ids
from thread_updater.app import UpdateNotApplied

THREAD = "thread_ordered"


def update(version: int | None, **fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"thread_id": THREAD, **fields}
    if version is not None:
        body["version"] = version
    return body


def batch(*bodies: dict[str, Any]) -> dict[str, Any]:
    return sqs_event(list(bodies))


def outcome_lines(logs: FunctionLogs) -> list[dict[str, Any]]:
    return [line for line in logs.lines() if "outcome" in line]


def stored_metadata(portkey: PortkeyStandIn) -> Any:
    stored = portkey.thread(THREAD)
    return stored["metadata"] if stored else None


@pytest.mark.usefixtures("state_table")
def test_an_older_update_after_a_newer_one_is_superseded(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given version 2 of a thread was applied
    invoke(batch(update(2, metadata={"v": "2"})))

    # When version 1 arrives afterwards (a hand-back, a redelivery, a late producer)
    response = invoke(batch(update(1, metadata={"v": "1"})))

    # Then it is acknowledged without a request: superseded, logged with both versions
    assert response == {"batchItemFailures": []}
    assert [request.json for request in portkey.requests] == [{"metadata": {"v": "2"}}]
    assert stored_metadata(portkey) == {"v": "2"}
    superseded = outcome_lines(logs)[-1]
    assert superseded["outcome"] == "superseded"
    assert (superseded["version"], superseded["newer_version"]) == (1, 2)
    assert superseded["version_source"] == "body"


def test_without_the_table_the_older_update_wins(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    # Given no state table (THREAD_STATE_TABLE unset): the same sequence as above
    invoke(batch(update(2, metadata={"v": "2"})))
    invoke(batch(update(1, metadata={"v": "1"})))

    # Then the thread ends on the older update: what the table exists to prevent
    assert stored_metadata(portkey) == {"v": "1"}


def test_without_the_table_one_warning_per_container_says_so(invoke: Invoker, logs: FunctionLogs) -> None:
    # When a container without THREAD_STATE_TABLE handles two invocations
    invoke(batch(update(1, metadata={"v": "1"})))
    invoke(batch(update(2, metadata={"v": "2"})))

    # Then one WARNING says ordering across batches is not protected
    warnings = [line for line in logs.lines() if "THREAD_STATE_TABLE is not set" in line["message"]]
    assert len(warnings) == 1
    assert warnings[0]["level"] == "WARNING"


@pytest.mark.usefixtures("state_table")
def test_without_a_version_the_sqs_sent_timestamp_orders_updates(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given two updates without a version, sent at t=2,000 ms and t=1,000 ms, arriving newest first
    newer = sqs_record(json.dumps(update(None, metadata={"v": "new"})), sent_ms=2_000)
    older = sqs_record(json.dumps(update(None, metadata={"v": "old"})), sent_ms=1_000)

    # When they are processed in that order in two invocations
    invoke({"Records": [newer]})
    invoke({"Records": [older]})

    # Then the older one is superseded
    assert stored_metadata(portkey) == {"v": "new"}
    last = outcome_lines(logs)[-1]
    assert (last["outcome"], last["version"], last["version_source"]) == (
        "superseded",
        1_000,
        "sent_timestamp",
    )


@pytest.mark.usefixtures("state_table")
def test_a_version_message_attribute_is_the_version(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given a producer that cannot change the body and sends the version as a message attribute
    newer = sqs_record(json.dumps(update(None, metadata={"v": "7"})), sent_ms=1)
    newer["messageAttributes"] = {"version": {"stringValue": "7", "dataType": "Number"}}
    invoke({"Records": [newer]})

    # When an update with a lower body version arrives later
    invoke(batch(update(6, metadata={"v": "6"})))

    # Then the attribute's version counted
    assert stored_metadata(portkey) == {"v": "7"}
    lines = outcome_lines(logs)
    assert (lines[0]["version"], lines[0]["version_source"]) == (7, "attribute")
    assert lines[-1]["outcome"] == "superseded"


@pytest.mark.parametrize(
    ("body_version", "attribute"),
    [(3, "4"), (None, "x1"), (None, "0"), (None, str(2**53)), (None, "1.5")],
    ids=["disagreeing", "not-a-number", "zero", "too-large", "fraction"],
)
@pytest.mark.usefixtures("state_table")
def test_a_bad_or_contradicting_version_attribute_is_a_validation_error(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, body_version: int | None, attribute: str
) -> None:
    # Given an update whose version attribute is unreadable or disagrees with the body
    record = sqs_record(json.dumps(update(body_version, metadata={"v": "x"})))
    record["messageAttributes"] = {"version": {"stringValue": attribute, "dataType": "Number"}}

    # When it is processed
    response = invoke({"Records": [record]})

    # Then it is dead-lettered as invalid, and nothing is sent
    assert response == {"batchItemFailures": []}
    assert portkey.requests == []
    [letter] = aws.dead_letters()
    assert letter["category"] == "validation"
    assert "version" in letter["error"]


@pytest.mark.usefixtures("state_table")
def test_a_field_newer_elsewhere_is_left_out_and_the_other_is_sent(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given version 3 set metadata
    invoke(batch(update(3, metadata={"v": "3"})))

    # When version 2 sets both metadata and tool_resources
    tools = {"file_search": {"vector_store_ids": ["vs_2"]}}
    invoke(batch(update(2, metadata={"v": "2"}, tool_resources=tools)))

    # Then version 2 wins tool_resources only: metadata keeps version 3's value (sent again whole, so a
    # replacing upstream holds it too)
    assert portkey.requests[-1].json == {"metadata": {"v": "3"}, "tool_resources": tools}
    stored = portkey.thread(THREAD)
    assert stored is not None
    assert (stored["metadata"], stored["tool_resources"]) == ({"v": "3"}, tools)
    last = outcome_lines(logs)[-1]
    assert (last["outcome"], last["sent_fields"], last["newer_version"]) == ("success", ["tool_resources"], 3)


@pytest.mark.usefixtures("state_table")
def test_an_equal_version_is_a_redelivery_and_is_applied_again(
    invoke: Invoker, portkey: PortkeyStandIn
) -> None:
    # When the same version arrives twice
    invoke(batch(update(5, metadata={"v": "5"})))
    invoke(batch(update(5, metadata={"v": "5"})))

    # Then both are sent (Modify Thread is idempotent for the same value)
    assert len(portkey.requests) == 2


@pytest.mark.usefixtures("state_table")
def test_a_rejected_newer_version_does_not_block_an_older_valid_one(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given version 2 is rejected by the upstream (a permanent 4xx)
    portkey.script(THREAD, Reply(status=400))
    invoke(batch(update(2, metadata={"v": "2"})))

    # When version 1 arrives afterwards
    invoke(batch(update(1, metadata={"v": "1"})))

    # Then version 1 is applied: a rejected version covers nothing; the letter names its version
    assert stored_metadata(portkey) == {"v": "1"}
    [letter] = aws.dead_letters()
    assert (letter["category"], letter["version"], letter["version_source"]) == ("rejected", 2, "body")


def test_on_a_standard_queue_a_message_group_does_not_split_a_thread(
    invoke: Invoker, portkey: PortkeyStandIn
) -> None:
    # Given a fair (standard) queue whose producers put a tenant id in MessageGroupId, and two
    # updates of one thread in different groups, the older one slow to answer
    portkey.script(THREAD, Reply(delay=0.3))
    records = [
        sqs_record(json.dumps(update(1, metadata={"v": "1"})), group_id="tenant-a", queue_name="updates"),
        sqs_record(json.dumps(update(2, metadata={"v": "2"})), group_id="tenant-b", queue_name="updates"),
    ]

    # When they arrive in one batch
    invoke({"Records": records})

    # Then the thread is their lane: one request for both, holding the newer value
    [request] = portkey.requests_for(THREAD)
    assert request.json == {"metadata": {"v": "2"}}
    assert stored_metadata(portkey) == {"v": "2"}


@pytest.mark.usefixtures("state_table")
def test_eventbridge_retry_after_a_newer_event_is_superseded(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an event (version 1) that fails transiently, so Lambda will retry it later
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    portkey.script(THREAD, Reply(status=503))
    older = eventbridge_event(update(1, metadata={"v": "1"}))
    with pytest.raises(UpdateNotApplied):
        invoke(older)

    # When a newer event is applied, then Lambda retries the older one
    invoke(eventbridge_event(update(2, metadata={"v": "2"})))
    assert invoke(older) is None

    # Then the retry is superseded: the thread keeps version 2
    assert stored_metadata(portkey) == {"v": "2"}
    assert len(portkey.requests) == 2


@pytest.mark.usefixtures("state_table")
def test_eventbridge_events_without_a_version_are_ordered_by_their_time(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given two events without a version, one a minute newer, arriving newest first
    newer = eventbridge_event(update(None, metadata={"v": "new"})) | {"time": "2026-12-01T10:01:00Z"}
    older = eventbridge_event(update(None, metadata={"v": "old"})) | {"time": "2026-12-01T10:00:00Z"}

    # When both are processed
    invoke(newer)
    invoke(older)

    # Then the older is superseded, its version being the event time in epoch ms
    assert stored_metadata(portkey) == {"v": "new"}
    last = outcome_lines(logs)[-1]
    assert (last["outcome"], last["version"], last["version_source"]) == (
        "superseded",
        1_796_119_200_000,
        "event_time",
    )


@pytest.mark.usefixtures("state_table")
def test_a_thread_held_by_another_invocation_is_handed_back_without_a_request(
    function_env: dict[str, str], portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given one invocation whose request for the thread is in flight (held by the stand-in)
    release = threading.Event()
    portkey.script(THREAD, Reply(hold=release))
    results: dict[str, Any] = {}
    first = threading.Thread(
        target=lambda: results.update(first=Invoker()(batch(update(1, metadata={"v": "1"}))))
    )
    first.start()
    try:
        assert portkey.wait_for_in_flight(1)

        # When a second invocation gets a newer update of the same thread
        second_event = batch(update(2, metadata={"v": "2"}))
        second = Invoker()(second_event)
    finally:
        release.set()
        first.join(timeout=30)

    # Then the second hands it back with a short delay of its own, having sent nothing meanwhile
    assert failed_ids(second) == {second_event["Records"][0]["messageId"]}
    assert len(portkey.requests) == 1
    handed_back = [line for line in outcome_lines(logs) if line["outcome"] == "retry"]
    assert "held by another invocation" in handed_back[0]["error"]
    assert 1 <= handed_back[0]["retry_delay_s"] <= 300
    assert results["first"] == {"batchItemFailures": []}


HEAL_DELAY_S = 5
"""The heal delay of the late-write tests: the next invocation must send its newer update before the
heal is due (else it rightly settles the doubt itself), and on a loaded machine one invocation has
been seen to take over a second."""


def time_out_quickly(monkeypatch: pytest.MonkeyPatch, *, attempts: int, heal_delay_s: int) -> None:
    """Requests time out after 0.3 s, ``attempts`` per update, heals after ``heal_delay_s``."""
    monkeypatch.setenv("MAX_ATTEMPTS", str(attempts))
    monkeypatch.setenv("PORTKEY_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("LATE_WRITE_HEAL_DELAY_SECONDS", str(heal_delay_s))


@pytest.mark.usefixtures("state_table")
def test_an_older_update_waits_for_a_newer_one_whose_outcome_is_unknown(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given version 2 timed out on our side (the upstream may still write it) and heals in 60 s
    time_out_quickly(monkeypatch, attempts=1, heal_delay_s=60)
    release = threading.Event()
    portkey.script(THREAD, Reply(hold=release, apply=False))
    try:
        invoke(batch(update(2, metadata={"v": "2"})))
    finally:
        release.set()
    assert portkey.wait_for(lambda: portkey.in_flight == 0)

    # When version 1 arrives
    event = batch(update(1, metadata={"v": "1"}))
    response = invoke(event)

    # Then it is handed back without a request: an older value never follows a newer one in flight
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert len(portkey.requests) == 1
    waiting = outcome_lines(logs)[-1]
    assert "waiting for metadata.v version 2" in waiting["error"]
    assert waiting["retry_delay_s"] <= 61


@pytest.mark.usefixtures("state_table")
def test_a_late_write_is_healed_by_the_delayed_resend(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given version 1's request times out on our side while the upstream still holds it
    time_out_quickly(monkeypatch, attempts=1, heal_delay_s=HEAL_DELAY_S)
    release = threading.Event()
    portkey.script(THREAD, Reply(hold=release))
    first_event = batch(update(1, metadata={"v": "1"}))
    try:
        first = invoke(first_event)
        assert failed_ids(first) == {first_event["Records"][0]["messageId"]}
        uncertain_at = time.monotonic()

        # And version 2 is applied meanwhile
        invoke(batch(update(2, metadata={"v": "2"})))
        assert stored_metadata(portkey) == {"v": "2"}
    finally:
        # When the upstream finally writes version 1 (a late write that overtakes version 2)
        release.set()
    assert portkey.wait_for(lambda: portkey.in_flight == 0 and stored_metadata(portkey) == {"v": "1"})

    # And version 1 comes back after the heal delay (its hand-back delay; here real time,
    # which is the bound under test, not a stand-in for synchronisation)
    time.sleep(max(0.0, uncertain_at + HEAL_DELAY_S + 0.05 - time.monotonic()))
    response = invoke(first_event)

    # Then the newest state is sent again: the thread converges on version 2
    assert response == {"batchItemFailures": []}
    assert portkey.requests[-1].json == {"metadata": {"v": "2"}}
    assert stored_metadata(portkey) == {"v": "2"}
    healed = outcome_lines(logs)[-1]
    assert (healed["outcome"], healed["healed"]) == ("superseded", ["metadata.v"])


@pytest.mark.usefixtures("state_table")
def test_an_update_applied_on_a_retry_still_returns_to_heal_a_late_first_attempt(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given version 1's first attempt times out on our side while the upstream still holds it, and
    # its retry is applied (2xx): the update is applied, but the first attempt may still land
    time_out_quickly(monkeypatch, attempts=2, heal_delay_s=HEAL_DELAY_S)
    release = threading.Event()
    portkey.script(THREAD, Reply(hold=release), Reply())
    first_event = batch(update(1, metadata={"v": "1"}))
    try:
        first = invoke(first_event)
        handed_back_at = time.monotonic()

        # And version 2 is applied meanwhile, the last update of the thread
        invoke(batch(update(2, metadata={"v": "2"})))
        assert stored_metadata(portkey) == {"v": "2"}
    finally:
        # When the upstream finally writes version 1's first attempt (a late write over version 2)
        release.set()
    assert portkey.wait_for(lambda: portkey.in_flight == 0 and stored_metadata(portkey) == {"v": "1"})

    # Then version 1's record was handed back with the heal delay, although it was applied: only its
    # return after that delay makes the thread be looked at again
    assert failed_ids(first) == {first_event["Records"][0]["messageId"]}
    applied_late = next(line for line in outcome_lines(logs) if line["version"] == 1)
    assert (applied_late["outcome"], applied_late["status"]) == ("retry", 200)
    assert applied_late["retry_delay_s"] == HEAL_DELAY_S
    # and when it returns (real time: the bound under test, not synchronisation), the newest
    # state is sent again and the thread converges on version 2
    time.sleep(max(0.0, handed_back_at + HEAL_DELAY_S + 0.05 - time.monotonic()))
    assert invoke(first_event) == {"batchItemFailures": []}
    assert stored_metadata(portkey) == {"v": "2"}
    healed = outcome_lines(logs)[-1]
    assert (healed["outcome"], healed["healed"]) == ("superseded", ["metadata.v"])


@pytest.mark.usefixtures("state_table")
def test_a_heal_whose_first_attempt_is_in_doubt_is_healed_again(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given version 2 timed out (never written), version 3 was applied, and version 2's return heals
    # the thread with version 3's value: that heal's first attempt times out while the upstream still
    # holds it, its retry is applied
    time_out_quickly(monkeypatch, attempts=1, heal_delay_s=HEAL_DELAY_S)
    never, heal_held = threading.Event(), threading.Event()
    portkey.script(THREAD, Reply(hold=never, apply=False), Reply(), Reply(hold=heal_held), Reply())
    late = batch(update(2, metadata={"v": "2"}))
    try:
        invoke(late)
        never.set()
        doubt_at = time.monotonic()
        invoke(batch(update(3, metadata={"v": "3"})))
        time.sleep(max(0.0, doubt_at + HEAL_DELAY_S + 0.05 - time.monotonic()))  # the heal delay under test
        monkeypatch.setenv("MAX_ATTEMPTS", "2")
        invoke(late)
        heal_in_doubt_at = time.monotonic()

        # And version 4 is applied while the heal's first attempt is still held
        invoke(batch(update(4, metadata={"v": "4"})))
        assert stored_metadata(portkey) == {"v": "4"}
    finally:
        never.set()
        # When that held heal attempt is finally written (version 3's value, over version 4)
        heal_held.set()
    assert portkey.wait_for(lambda: portkey.in_flight == 0 and stored_metadata(portkey) == {"v": "3"})

    # Then the heal was in doubt too: once its heal time has come, the newest state is sent again
    time.sleep(max(0.0, heal_in_doubt_at + HEAL_DELAY_S + 0.05 - time.monotonic()))
    assert invoke(late) == {"batchItemFailures": []}
    assert stored_metadata(portkey) == {"v": "4"}
    assert outcome_lines(logs)[-1]["healed"] == ["metadata.v"]


@pytest.mark.usefixtures("state_table")
def test_an_eventbridge_retry_heals_a_late_write_once_its_heal_time_has_come(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given an event (version 1) whose request times out while the upstream still holds it
    time_out_quickly(monkeypatch, attempts=1, heal_delay_s=HEAL_DELAY_S)
    release = threading.Event()
    portkey.script(THREAD, Reply(hold=release))
    older = eventbridge_event(update(1, metadata={"v": "1"}))
    try:
        with pytest.raises(UpdateNotApplied):
            invoke(older)
        uncertain_at = time.monotonic()
        # And a newer event is applied meanwhile
        invoke(eventbridge_event(update(2, metadata={"v": "2"})))
    finally:
        release.set()  # the late write of version 1 lands, overtaking version 2
    assert portkey.wait_for(lambda: portkey.in_flight == 0 and stored_metadata(portkey) == {"v": "1"})
    sent_before_retry = len(portkey.requests)

    # When Lambda retries the older event before its heal time, it waits (raises, nothing sent)
    with pytest.raises(UpdateNotApplied, match="whose outcome is unknown"):
        invoke(older)
    assert len(portkey.requests) == sent_before_retry

    # And when it retries after the heal time (the delay under test), the newest state is sent again
    time.sleep(max(0.0, uncertain_at + HEAL_DELAY_S + 0.05 - time.monotonic()))
    assert invoke(older) is None
    assert portkey.requests[-1].json == {"metadata": {"v": "2"}}
    assert stored_metadata(portkey) == {"v": "2"}


@pytest.mark.parametrize(
    ("reply", "ordered", "returns_within_s"),
    [(Reply(drop="mid_response"), True, 2), (Reply(status=503), False, 5)],
    ids=["unknown-outcome-after-the-heal-delay", "transient-after-the-first-backoff-step"],
)
def test_a_handed_back_record_returns_after_its_own_delay(
    function_env: dict[str, str],
    aws: AwsResources,
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    reply: Reply,
    ordered: bool,
    returns_within_s: int,
) -> None:
    # Given a real queue whose visibility timeout is five minutes and an update that fails once:
    # dropped mid-answer (outcome unknown; heal delay 0 s), or a 503 (backoff: 1-2 s on receive 1)
    if ordered:
        request.getfixturevalue("state_table")
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    aws.sqs.set_queue_attributes(QueueUrl=aws.queue_url, Attributes={"VisibilityTimeout": "300"})
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps(update(1, metadata={"v": "1"})))
    portkey.script(THREAD, reply)
    [message] = aws.sqs.receive_message(QueueUrl=aws.queue_url, AttributeNames=["All"])["Messages"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["QueueArn"])["Attributes"]

    # When the function hands it back
    response = Invoker()({"Records": [lambda_record(message, arn["QueueArn"])]})
    assert failed_ids(response) == {message["MessageId"]}

    # Then a long poll sees it again within its own delay, not after the queue's five minutes
    again = aws.sqs.receive_message(QueueUrl=aws.queue_url, WaitTimeSeconds=returns_within_s)
    assert [item["MessageId"] for item in again.get("Messages", [])] == [message["MessageId"]]


def test_a_missing_state_table_is_a_configuration_error(
    invoke: Invoker,
    portkey: PortkeyStandIn,
    aws: AwsResources,
    logs: FunctionLogs,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given THREAD_STATE_TABLE names a table that does not exist
    monkeypatch.setenv("THREAD_STATE_TABLE", "no-such-table")
    event = batch(update(1, metadata={"v": "1"}), update(2, tool_resources=None))

    # When a batch arrives
    response = invoke(event)

    # Then nothing is sent or dead-lettered; every record goes back, loudly
    assert failed_ids(response) == {record["messageId"] for record in event["Records"]}
    assert portkey.requests == []
    assert aws.dead_letters() == []
    errors = [line for line in logs.lines() if line["level"] == "ERROR"]
    assert "ResourceNotFoundException" in errors[0]["error"]
    assert "THREAD_STATE_TABLE" in errors[0]["error"]


@pytest.mark.parametrize(
    ("code", "configuration"),
    [
        ("ThrottlingException", False),
        ("ProvisionedThroughputExceededException", False),
        ("AccessDeniedException", True),
    ],
)
def test_dynamodb_errors_hand_back_and_access_denied_is_loud(
    invoke: Invoker,
    portkey: PortkeyStandIn,
    aws: AwsResources,
    logs: FunctionLogs,
    monkeypatch: pytest.MonkeyPatch,
    dynamodb_answering: Any,
    code: str,
    configuration: bool,
) -> None:
    # Given a DynamoDB endpoint that answers every call with ``code``
    monkeypatch.setenv("THREAD_STATE_TABLE", "thread-state")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_answering(code))
    event = batch(update(1, metadata={"v": "1"}))

    # When a batch arrives
    response = invoke(event)

    # Then the record goes back to the queue, never to the DLQ, and nothing is sent
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert aws.dead_letters() == []
    assert portkey.requests == []
    errors = [line for line in logs.lines() if line["level"] == "ERROR"]
    if configuration:  # access denied is the deployment's fault: a configuration error
        assert code in errors[0]["error"]
    else:  # throttling is transient: a quiet hand-back with a retry delay
        assert errors == []
        assert "state table" in outcome_lines(logs)[-1]["error"]


def test_an_unreachable_dynamodb_hands_the_record_back(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a DynamoDB endpoint nobody listens on
    monkeypatch.setenv("THREAD_STATE_TABLE", "thread-state")
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:9")
    event = batch(update(1, metadata={"v": "1"}))

    # When a batch arrives, then the record goes back; nothing sent, nothing dead-lettered
    assert failed_ids(invoke(event)) == {event["Records"][0]["messageId"]}
    assert portkey.requests == []
    assert aws.dead_letters() == []


@pytest.mark.usefixtures("state_table")
def test_a_dynamodb_answer_trickling_in_cannot_keep_the_batch_past_its_deadline(
    portkey: PortkeyStandIn,
    aws: AwsResources,
    monkeypatch: pytest.MonkeyPatch,
    dripping_aws: Callable[[float], DrippingProxy],
) -> None:
    # Given the state table behind an endpoint that sends its answers one byte every half second (each
    # read well within botocore's 2 s read timeout; a whole answer takes minutes), and 20 s to go
    proxy = dripping_aws(0.5)
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", proxy.url)
    event = batch(update(1, metadata={"v": "1"}))
    context = LocalContext(timeout_s=20)

    # When the batch is processed
    from handler import lambda_handler

    response = lambda_handler(event, context)

    # Then the handler answered before Lambda's deadline, the record handed back: the claim was cut
    # at its worst case (botocore's retry refused after it), nothing sent, nothing dead-lettered
    assert context.get_remaining_time_in_millis() > 0
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert proxy.requests == 1
    assert portkey.requests == []
    assert aws.dead_letters() == []


def test_the_template_table_key_is_what_the_function_uses(state_table: str) -> None:
    # The function's item layout needs only the partition key thread_id (String)
    described = boto3.client("dynamodb").describe_table(TableName=state_table)["Table"]
    assert described["KeySchema"] == [{"AttributeName": "thread_id", "KeyType": "HASH"}]
