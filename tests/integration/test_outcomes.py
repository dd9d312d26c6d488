"""Every row of the outcome table, through moto SQS/Secrets Manager and the Portkey stand-in."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devstack.lambda_events import eventbridge_event, sqs_event
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import API_KEY, VIRTUAL_KEY, AwsResources, FunctionLogs, Invoker, failed_ids


def test_valid_update_is_applied_with_exactly_its_fields(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given an update that sets metadata and explicitly clears tool_resources
    event = sqs_event([{"thread_id": "thread_abc123", "metadata": {"user": "abc"}, "tool_resources": None}])

    # When the handler processes the batch
    response = invoke(event)

    # Then it is applied: one POST with exactly the message's fields, nothing to retry or dead-letter
    assert response == {"batchItemFailures": []}
    [request] = portkey.requests
    assert request.method == "POST"
    assert request.path == "/v1/threads/thread_abc123"
    assert request.json == {"metadata": {"user": "abc"}, "tool_resources": None}
    assert request.headers["x-portkey-api-key"] == API_KEY
    assert request.headers["x-portkey-virtual-key"] == VIRTUAL_KEY
    assert request.headers["openai-beta"] == "assistants=v2"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-portkey-trace-id"] == event["Records"][0]["messageId"]
    assert portkey.thread("thread_abc123") is not None
    assert aws.dead_letters() == []


def test_fields_absent_from_the_message_are_not_sent(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    # Given an update with only tool_resources
    body = {"thread_id": "t-1", "tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}}}

    # When it is processed
    invoke(sqs_event([body]))

    # Then metadata is not in the request body at all
    assert portkey.requests[0].json == {"tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}}}


INVALID_BODIES = {
    "not json": ("not json", "not valid JSON"),
    "json array": ("[1, 2]", "JSON object"),
    "missing thread_id": (json.dumps({"metadata": {}}), "thread_id"),
    "path traversal": (json.dumps({"thread_id": "../assistants"}), "thread_id"),
    "encoded slash": (json.dumps({"thread_id": "a%2Fb"}), "thread_id"),
    "too long id": (json.dumps({"thread_id": "t" * 129}), "thread_id"),
    "non-string value": (json.dumps({"thread_id": "t1", "metadata": {"count": 3}}), "metadata.count"),
    "17 keys": (json.dumps({"thread_id": "t1", "metadata": {f"k{i}": "v" for i in range(17)}}), "metadata"),
    "long key": (json.dumps({"thread_id": "t1", "metadata": {"k" * 65: "v"}}), "metadata"),
    "long value": (json.dumps({"thread_id": "t1", "metadata": {"k": "v" * 513}}), "metadata.k"),
    "21 file ids": (
        json.dumps({"thread_id": "t1", "tool_resources": {"code_interpreter": {"file_ids": ["f"] * 21}}}),
        "file_ids",
    ),
    "2 vector stores": (
        json.dumps({"thread_id": "t1", "tool_resources": {"file_search": {"vector_store_ids": ["a", "b"]}}}),
        "vector_store_ids",
    ),
    "unknown field": (json.dumps({"thread_id": "t1", "messages": []}), "messages"),
}


def test_invalid_messages_are_dead_lettered_with_reason_and_payload_without_http_call(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given a batch of invalid messages
    event = sqs_event([body for body, _ in INVALID_BODIES.values()])
    expected = {
        record["messageId"]: (record["body"], reason)
        for record, (_, reason) in zip(event["Records"], INVALID_BODIES.values(), strict=True)
    }

    # When the handler processes it
    response = invoke(event)

    # Then none is retried, none reaches Portkey, and each is in the DLQ with its reason and exact payload
    assert response == {"batchItemFailures": []}
    assert portkey.requests == []
    letters = {letter["message_id"]: letter for letter in aws.dead_letters()}
    assert set(letters) == set(expected)
    for message_id, (payload, reason) in expected.items():
        letter = letters[message_id]
        assert letter["category"] == "validation"
        assert letter["payload"] == payload
        assert reason in letter["error"]
        assert letter["status"] is None
        assert letter["source"] == "sqs"
        assert letter["attempts"] == 0
        assert letter["failed_at"].endswith("+00:00")
        assert letter["_attributes"]["category"] == "validation"


@pytest.mark.parametrize("status", [400, 404, 410, 422])
def test_permanent_4xx_is_dead_lettered_as_rejected_with_portkeys_message(
    status: int, invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given Portkey answers a permanent client error for this thread
    message = f"No thread found with id 'thread_gone' ({status})"
    portkey.always("thread_gone", Reply(status=status, body={"error": {"message": message, "type": "x"}}))
    event = sqs_event([{"thread_id": "thread_gone", "metadata": {"a": "b"}}])

    # When the update is processed
    response = invoke(event)

    # Then it is not retried: one attempt, dead-lettered as rejected with the status and Portkey's message
    assert response == {"batchItemFailures": []}
    assert len(portkey.requests) == 1
    [letter] = aws.dead_letters()
    assert letter["category"] == "rejected"
    assert letter["status"] == status
    assert message in letter["error"]
    assert letter["thread_id"] == "thread_gone"
    assert letter["attempts"] == 1
    assert letter["payload"] == event["Records"][0]["body"]
    assert letter["_attributes"] == {"category": "rejected", "status": str(status)}


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_transient_answers_are_retried_then_handed_back(
    status: int, invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given Portkey keeps failing transiently for one thread, and another thread is fine
    portkey.always("thread_busy", Reply(status=status, headers={"Retry-After": "0"}))
    event = sqs_event(
        [{"thread_id": "thread_busy", "metadata": {}}, {"thread_id": "thread_ok", "metadata": {}}]
    )

    # When the batch is processed
    response = invoke(event)

    # Then the failing update used MAX_ATTEMPTS (3) and is handed back; the other is applied; no DLQ
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert len(portkey.requests_for("thread_busy")) == 3
    assert len(portkey.requests_for("thread_ok")) == 1
    assert aws.dead_letters() == []


def test_transient_failure_followed_by_success_is_applied(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    # Given a 429 with Retry-After, then a 503, then success
    portkey.script("thread_x", Reply(status=429, headers={"Retry-After": "0"}), Reply(status=503))

    # When the update is processed
    response = invoke(sqs_event([{"thread_id": "thread_x", "metadata": {"v": "1"}}]))

    # Then it is applied on the third attempt
    assert response == {"batchItemFailures": []}
    assert [request.status for request in portkey.requests] == [429, 503, 200]
    stored = portkey.thread("thread_x")
    assert stored is not None
    assert stored["metadata"] == {"v": "1"}


def test_retry_after_beyond_the_deadline_hands_back_without_waiting(
    invoke: Invoker, portkey: PortkeyStandIn
) -> None:
    # Given Portkey asks to wait two minutes, longer than the invocation has left
    portkey.always("thread_x", Reply(status=429, headers={"Retry-After": "120"}))
    event = sqs_event([{"thread_id": "thread_x"}])

    # When the update is processed with 10 s left
    response = invoke(event, timeout_s=10)

    # Then it is handed back after one attempt instead of sleeping past the deadline
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert len(portkey.requests) == 1


def test_read_timeout_is_transient(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a short read timeout and a Portkey that answers too slowly, then normally
    monkeypatch.setenv("PORTKEY_READ_TIMEOUT", "0.3")
    monkeypatch.setenv("MAX_ATTEMPTS", "2")
    portkey.script("thread_slow", Reply(delay=3.0))

    # When the update is processed
    response = invoke(sqs_event([{"thread_id": "thread_slow", "metadata": {}}]))

    # Then the slow attempt timed out and the second one applied it
    assert response == {"batchItemFailures": []}
    assert portkey.arrived == 2
    assert portkey.requests_for("thread_slow")[0].status == 200


@pytest.mark.parametrize("drop", ["before_response", "mid_response"])
def test_dropped_connections_are_retried(drop: Any, invoke: Invoker, portkey: PortkeyStandIn) -> None:
    # Given the connection is closed once without a (complete) answer
    portkey.script("thread_drop", Reply(drop=drop))

    # When the update is processed
    response = invoke(sqs_event([{"thread_id": "thread_drop", "metadata": {}}]))

    # Then the retry applies it
    assert response == {"batchItemFailures": []}
    assert [request.status for request in portkey.requests][-1] == 200
    assert len(portkey.requests) == 2


def test_connection_refused_exhausts_attempts_and_hands_back(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given PORTKEY_BASE_URL points at a port where nothing listens (the stand-in, stopped)
    url = portkey.url
    portkey.stop()
    monkeypatch.setenv("PORTKEY_BASE_URL", url)
    event = sqs_event([{"thread_id": "thread_x"}])

    # When the update is processed
    response = invoke(event)

    # Then it goes back to the queue
    assert failed_ids(response) == {event["Records"][0]["messageId"]}


def test_dead_letter_queue_failure_hands_the_record_back(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the DLQ does not exist (deleted)
    aws.sqs.delete_queue(QueueUrl=aws.dlq_url)
    event = sqs_event(["not json", {"thread_id": "thread_ok"}])

    # When an invalid message must be dead-lettered
    response = invoke(event)

    # Then it is handed back instead of being lost (a DLQ that does not exist stops the batch as a
    # configuration error); the valid one is applied or handed back, never lost
    invalid, valid = (record["messageId"] for record in event["Records"])
    assert invalid in failed_ids(response)
    assert (len(portkey.requests) == 1) != (valid in failed_ids(response))


def test_eventbridge_via_sqs_is_unwrapped_to_its_detail(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given EventBridge events delivered through the queue, one valid and one invalid
    good = eventbridge_event({"thread_id": "thread_eb", "metadata": {"stage": "reviewed"}})
    bad = eventbridge_event({"thread_id": "thread_eb", "metadata": {f"k{i}": "v" for i in range(17)}})
    event = sqs_event([good, bad])

    # When the batch is processed
    response = invoke(event)

    # Then the detail is applied, and the invalid one is dead-lettered with its original SQS body
    assert response == {"batchItemFailures": []}
    [request] = portkey.requests
    assert request.json == {"metadata": {"stage": "reviewed"}}
    [letter] = aws.dead_letters()
    assert letter["category"] == "validation"
    assert letter["payload"] == event["Records"][1]["body"]
    assert "detail.metadata" in letter["error"]


def test_eventbridge_direct_applied(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    # Given an EventBridge event invoking the function directly
    event = eventbridge_event({"thread_id": "thread_eb", "metadata": {"stage": "done"}})

    # When it is processed
    result = invoke(event)

    # Then it returns normally and the update reached Portkey, traced by the event id
    assert result is None
    [request] = portkey.requests
    assert request.json == {"metadata": {"stage": "done"}}
    assert request.headers["x-portkey-trace-id"] == event["id"]


def test_eventbridge_direct_invalid_is_dead_lettered_and_returns(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given an EventBridge event whose detail is invalid
    event = eventbridge_event({"thread_id": "bad id"})

    # When it is processed
    result = invoke(event)

    # Then the invocation succeeds and the whole event is in the DLQ, replayable
    assert result is None
    assert portkey.requests == []
    [letter] = aws.dead_letters()
    assert letter["source"] == "eventbridge"
    assert letter["message_id"] == event["id"]
    assert json.loads(letter["payload"]) == event
    assert letter["category"] == "validation"


def test_eventbridge_direct_transient_failure_raises_for_lambda_retry(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given Portkey keeps answering 503
    portkey.always("thread_eb", Reply(status=503))

    # When the event is processed, Then the invocation fails so Lambda retries it; nothing is dead-lettered
    from thread_updater.app import UpdateNotApplied

    with pytest.raises(UpdateNotApplied, match="HTTP 503"):
        invoke(eventbridge_event({"thread_id": "thread_eb"}))
    assert aws.dead_letters() == []


def test_eventbridge_direct_rejected_is_dead_lettered(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given the thread API is gone upstream
    portkey.always("thread_eb", Reply(status=404))

    # When the event is processed
    result = invoke(eventbridge_event({"thread_id": "thread_eb", "metadata": {}}))

    # Then it returns normally and the event is dead-lettered as rejected/404
    assert result is None
    [letter] = aws.dead_letters()
    assert (letter["category"], letter["status"], letter["source"]) == ("rejected", 404, "eventbridge")


def test_unsupported_event_shape_is_a_clear_error(invoke: Invoker) -> None:
    with pytest.raises(ValueError, match="unsupported event"):
        invoke({"hello": "world"})


def test_unicode_is_applied_and_escaped_lone_surrogates_are_dead_lettered_verbatim(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given updates with non-ASCII text and a JSON-escaped lone surrogate (valid JSON, not encodable as UTF-8)
    event = sqs_event(
        [
            {"thread_id": "thread_u", "metadata": {"name": "Zoë 🚀 名前"}},
            '{"thread_id": "thread_s", "metadata": {"k": "\\ud800"}}',
            '{"thread_id": "thread_s", "bad": "\\udfff"}',
        ]
    )

    # When they are processed
    response = invoke(event)

    # Then the Unicode one reaches Portkey with its exact value; the other two are dead-lettered verbatim
    assert response == {"batchItemFailures": []}
    assert [request.json for request in portkey.requests] == [{"metadata": {"name": "Zoë 🚀 名前"}}]
    letters = sorted(aws.dead_letters(), key=lambda letter: str(letter["payload"]))
    assert [letter["payload"] for letter in letters] == sorted(
        record["body"] for record in event["Records"][1:]
    )
    assert {letter["category"] for letter in letters} == {"validation"}


def test_eventbridge_event_with_a_lone_surrogate_is_dead_lettered_not_crashed(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given a direct EventBridge event whose detail holds a lone surrogate (Lambda decodes "\ud800" escapes)
    event = eventbridge_event({"thread_id": "thread_s", "metadata": {"k": "\ud800"}})

    # When it is processed
    result = invoke(event)

    # Then it returns normally and the event is dead-lettered, decodable back to the same event
    assert result is None
    assert portkey.requests == []
    [letter] = aws.dead_letters()
    assert letter["category"] == "validation"
    assert json.loads(letter["payload"]) == event


def test_an_answer_trickling_past_the_deadline_is_cut_off(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    # Given a warm container (the secret is cached: reading it needs more time than this test leaves)
    assert invoke(sqs_event([{"thread_id": "thread_warm"}])) == {"batchItemFailures": []}
    # and Portkey sends its headers at once but the body one byte every half second, for ever
    portkey.always("thread_drip", Reply(drip=0.5))
    event = sqs_event([{"thread_id": "thread_drip"}])

    # When the update is processed with 4 s left (deadline 3.5 s)
    response = invoke(event, timeout_s=4)

    # Then the attempt is abandoned at the deadline and the update handed back (the per-read timeout
    # alone would have waited for the whole body), without another attempt past the deadline
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert len(portkey.requests_for("thread_drip")) <= 1
    assert portkey.arrived == 2


def test_headers_trickling_past_the_deadline_are_cut_off_before_the_invocation_ends(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given a warm container, and Portkey sends "HTTP/1.0 200 OK" at once, then its headers one byte
    # every half second (each read is far within the read timeout; the whole would take over a minute)
    assert invoke(sqs_event([{"thread_id": "thread_warm"}])) == {"batchItemFailures": []}
    portkey.always("thread_drip", Reply(drip_headers=0.5))
    event = sqs_event([{"thread_id": "thread_drip"}])

    # When the update is processed by an invocation with a 6 s timeout
    timeout_s = 6
    started = time.monotonic()
    response = invoke(event, timeout_s=timeout_s)
    ended = time.monotonic()

    # Then the invocation answers before Lambda's deadline: the attempt was cut at the function's own
    # deadline (headers are read inside urllib3's request, where only each read had a bound), and the
    # cut answer was not taken for a 200 although its status line said so: the update is handed back
    assert ended < started + timeout_s
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert len(portkey.requests_for("thread_drip")) == 1
    [retry] = [line for line in logs.lines() if line.get("outcome") == "retry"]
    assert "not complete by the deadline" in retry["error"]


def test_an_absurd_retry_after_date_falls_back_to_backoff(invoke: Invoker, portkey: PortkeyStandIn) -> None:
    # Given a 503 whose Retry-After date cannot be represented, then success
    portkey.script("thread_x", Reply(status=503, headers={"Retry-After": "1 Dec 00:00:00 99999 31 Dec Dec"}))

    # When the update is processed
    response = invoke(sqs_event([{"thread_id": "thread_x"}]))

    # Then the retry still happens (with ordinary backoff) and applies it
    assert response == {"batchItemFailures": []}
    assert [request.status for request in portkey.requests] == [503, 200]


def test_no_dead_letter_is_started_without_time_to_finish_it(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given an invalid message and an invocation with only 5 s left (less than one bounded SQS call)
    event = sqs_event(["not json"])

    # When it is processed
    response = invoke(event, timeout_s=5)

    # Then it is handed back (to be dead-lettered by a later invocation) rather than risk the timeout
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert aws.dead_letters() == []
