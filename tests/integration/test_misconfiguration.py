"""Misconfiguration and outages around the function: the secret, the DLQ, SQS itself, DNS, clocks.

Each one shows that nothing is lost (the record is handed back, or applied once things recover) and
that the log says what is wrong. Neighbours: tests/integration/test_configuration.py (bad environment and
secrets at cold start), tests/integration/test_outcomes.py (DLQ missing for an invalid message, Retry-After in
seconds beyond the deadline, an unrepresentable Retry-After date).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest

from devstack.lambda_events import eventbridge_event, sqs_event
from devstack.loopback_http import LoopbackHTTPServer, serving
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import DEFAULT_SECRET, AwsResources, FunctionLogs, Invoker, failed_ids
from thread_updater import aws as aws_calls
from thread_updater.errors import ConfigurationError


def all_ids(event: dict[str, Any]) -> set[str]:
    return {record["messageId"] for record in event["Records"]}


def retry_lines(logs: FunctionLogs) -> list[dict[str, Any]]:
    return [line for line in logs.lines() if line.get("outcome") == "retry"]


def emf_total(stdout: str, name: str) -> float:
    total = 0.0
    for line in stdout.splitlines():
        if line.startswith('{"_aws"'):
            value = json.loads(line).get(name, 0)
            total += sum(value) if isinstance(value, list) else value
    return total


# --------------------------------------------------------------------------- the secret


def test_secret_deleted_in_a_warm_container_hands_batches_back_until_it_is_restored(
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    logs: FunctionLogs,
) -> None:
    # Given a warm container that has used the secret, with the cache expiring at once
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "0")
    assert invoke(sqs_event([{"thread_id": "t-warm"}])) == {"batchItemFailures": []}

    # When the secret is deleted (scheduled for deletion, as the console and CLI do) and a batch arrives
    aws.secrets.delete_secret(SecretId=aws.secret_id)
    event = sqs_event([{"thread_id": "t-1", "metadata": {"v": "1"}}, {"thread_id": "t-2"}])
    response = invoke(event)

    # Then every record goes back to the queue, nothing reaches Portkey or the DLQ, and the log names
    # the secret and the reason
    assert failed_ids(response) == all_ids(event)
    assert [request.thread_id for request in portkey.requests] == ["t-warm"]
    assert aws.dead_letters() == []
    errors = [line for line in logs.lines() if line["level"] == "ERROR"]
    assert errors
    assert f"Portkey secret {aws.secret_id!r} could not be read" in errors[0]["error"]
    assert "marked deleted" in errors[0]["error"]

    # And once the secret is restored, the redelivered batch is applied
    aws.secrets.restore_secret(SecretId=aws.secret_id)
    assert invoke(event) == {"batchItemFailures": []}
    assert sorted(str(request.thread_id) for request in portkey.requests) == ["t-1", "t-2", "t-warm"]


def test_secret_rewritten_as_malformed_json_is_noticed_at_the_next_fetch_and_nothing_is_sent(
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    logs: FunctionLogs,
) -> None:
    # Given a warm container with a working secret whose cache expires at once
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "0")
    assert invoke(sqs_event([{"thread_id": "t-warm"}])) == {"batchItemFailures": []}

    # When a botched rotation writes a value that is not JSON (it still contains the key)
    broken = '{"api_key": "pk-half-rotated-key", "virtual_key": '
    aws.put_secret(broken)
    event = sqs_event([{"thread_id": "t-1"}, {"thread_id": "t-2"}])
    response = invoke(event)

    # Then the batch is handed back without a request and without using the old cached key, and the
    # log says the secret is not valid JSON without echoing any of it
    assert failed_ids(response) == all_ids(event)
    assert len(portkey.requests) == 1
    assert aws.dead_letters() == []
    assert "Portkey secret: value is not valid JSON" in logs.text()
    assert "pk-half-rotated-key" not in logs.text()

    # And the fixed secret settles the redelivered batch
    aws.put_secret(DEFAULT_SECRET)
    assert invoke(event) == {"batchItemFailures": []}
    assert {request.thread_id for request in portkey.requests} == {"t-warm", "t-1", "t-2"}


# --------------------------------------------------------------------------- the dead-letter queue


def test_rejected_update_while_the_dlq_is_gone_is_a_configuration_error_and_dead_lettered_once_it_is_back(
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    logs: FunctionLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given the DLQ has been deleted and Portkey answers 404 for one thread (the invalid-message case
    # is tests/integration/test_outcomes.py::test_dead_letter_queue_failure_hands_the_record_back)
    dlq_name = aws.dlq_url.rsplit("/", 1)[1]
    aws.sqs.delete_queue(QueueUrl=aws.dlq_url)
    portkey.always("thread_gone", Reply(status=404))
    event = sqs_event([{"thread_id": "thread_gone", "metadata": {"v": "1"}}, {"thread_id": "thread_ok"}])
    capsys.readouterr()

    # When the batch is processed
    response = invoke(event)

    # Then the rejected update goes back to the queue instead of vanishing, the other one is applied
    # or handed back (the lanes run concurrently; the batch stops at the configuration error)
    gone, ok = (record["messageId"] for record in event["Records"])
    assert gone in failed_ids(response)
    assert (portkey.thread("thread_ok") is not None) != (ok in failed_ids(response))
    # and it is reported as what it is, a broken deployment: one ERROR naming DLQ_URL, the
    # ConfigurationErrors metric, and no WARNING-level retry line blaming the record
    [error] = [line for line in logs.lines() if line["level"] == "ERROR"]
    assert f"DLQ_URL={aws.dlq_url} does not exist" in error["error"]
    assert emf_total(capsys.readouterr().out, "ConfigurationErrors") == 1

    # And when the queue exists again, the redelivered update is dead-lettered with its reason
    assert aws.sqs.create_queue(QueueName=dlq_name)["QueueUrl"] == aws.dlq_url
    assert invoke({"Records": [event["Records"][0]]}) == {"batchItemFailures": []}
    [letter] = aws.dead_letters()
    assert (letter["message_id"], letter["category"], letter["status"]) == (gone, "rejected", 404)


def test_eventbridge_update_that_cannot_be_dead_lettered_fails_the_invocation(
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    logs: FunctionLogs,
) -> None:
    # Given the DLQ has been deleted
    aws.sqs.delete_queue(QueueUrl=aws.dlq_url)
    portkey.always("thread_gone", Reply(status=404))

    # When a direct EventBridge event is invalid, or rejected by Portkey, Then the invocation raises
    # (Lambda retries it, then its on-failure destination keeps it) instead of returning normally
    for detail in ({"thread_id": "bad id"}, {"thread_id": "thread_gone"}):
        with pytest.raises(ConfigurationError, match=r"DLQ_URL=.* does not exist"):
            invoke(eventbridge_event(detail))

    # and each failure is one ERROR line about the configuration
    errors = [line for line in logs.lines() if line["level"] == "ERROR"]
    assert [line["message"] for line in errors] == [
        "configuration error: the invocation fails and Lambda retries it"
    ] * 2


@dataclass
class ThrottlingSqs:
    """A loopback HTTP server that answers every SQS (JSON protocol) call with a throttling error."""

    url: str
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def throttling_sqs() -> Iterator[ThrottlingSqs]:
    state = ThrottlingSqs(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = json.loads(self.rfile.read(length) or b"{}")
            with state.lock:
                state.calls.append((self.headers.get("X-Amz-Target", ""), body))
            answer = json.dumps(
                {"__type": "com.amazonaws.sqs#RequestThrottled", "message": "Rate exceeded"}
            ).encode()
            self.send_response(400)
            self.send_header("Content-Type", "application/x-amz-json-1.0")
            self.send_header("x-amzn-query-error", "RequestThrottled;Sender")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server, name="throttling-sqs"):
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        yield state


def test_throttled_dlq_sends_are_retried_by_botocore_then_the_record_is_handed_back(
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    throttling_sqs: ThrottlingSqs,
    logs: FunctionLogs,
) -> None:
    # Given SQS throttles the function (only SQS: boto3's service-specific endpoint variable sends
    # SQS calls to a server that throttles everything, Secrets Manager stays on moto)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", throttling_sqs.url)
    event = sqs_event(["not json", {"thread_id": "thread_ok"}])

    # When an invalid message must be dead-lettered
    response = invoke(event)

    # Then botocore retried the SendMessage, within the function's own bound for an AWS call
    # (thread_updater.aws.MAX_ATTEMPTS attempts, which its dead-letter time budget assumes), the record
    # was handed back rather than lost, the valid update was applied, and the log says the DLQ was
    # throttled
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert [target for target, _ in throttling_sqs.calls] == [
        "AmazonSQS.SendMessage"
    ] * aws_calls.MAX_ATTEMPTS
    for _, request in throttling_sqs.calls:
        assert request["QueueUrl"] == aws.dlq_url
        assert json.loads(request["MessageBody"])["payload"] == "not json"
    assert portkey.thread("thread_ok") is not None
    [line] = retry_lines(logs)
    assert line["category"] == "validation"
    assert "dead-letter queue send failed" in line["error"]
    assert "RequestThrottled" in line["error"]
    assert aws.dead_letters() == []


# --------------------------------------------------------------------------- Portkey unreachable


def test_portkey_host_that_does_not_resolve_hands_the_batch_back_after_max_attempts(
    invoke: Invoker, aws: AwsResources, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given PORTKEY_BASE_URL names a host that can never resolve (RFC 2606 .invalid: no traffic leaves)
    monkeypatch.setenv("PORTKEY_BASE_URL", "https://portkey.invalid/v1")
    monkeypatch.setenv("MAX_ATTEMPTS", "3")
    event = sqs_event([{"thread_id": "t-1"}, {"thread_id": "t-2"}])

    # When a batch arrives
    response = invoke(event)

    # Then every update is handed back after MAX_ATTEMPTS attempts, none is dead-lettered, and the log
    # says the name did not resolve
    assert failed_ids(response) == all_ids(event)
    assert aws.dead_letters() == []
    lines = retry_lines(logs)
    assert {line["message_id"] for line in lines} == all_ids(event)
    for line in lines:
        assert line["attempts"] == 3
        assert line.get("status") is None  # Powertools leaves None fields out
        assert "NameResolutionError" in line["error"]
        assert "portkey.invalid" in line["error"]


# --------------------------------------------------------------------------- clocks


def test_retry_after_date_in_the_past_is_retried_at_once(
    invoke: Invoker, portkey: PortkeyStandIn, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given Portkey's clock is an hour behind: its 429 asks to retry at an HTTP date already past
    capsys.readouterr()
    past = formatdate(time.time() - 3600, usegmt=True)
    portkey.script("thread_x", Reply(status=429, headers={"Retry-After": past}))

    # When the update is processed
    response = invoke(sqs_event([{"thread_id": "thread_x", "metadata": {"v": "1"}}]))

    # Then the date counted as "now": the header was honoured (RetryAfterWaits) with no wait worth
    # the name, and the second attempt applied the update
    assert response == {"batchItemFailures": []}
    first, second = portkey.requests
    assert (first.status, second.status) == (429, 200)
    assert second.arrived_at - first.arrived_at < 1.0
    assert emf_total(capsys.readouterr().out, "RetryAfterWaits") == 1


def test_retry_after_date_far_in_the_future_hands_back_without_waiting(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, logs: FunctionLogs
) -> None:
    # Given Portkey's clock is a day ahead: its 429 asks to retry at an HTTP date tomorrow
    future = formatdate(time.time() + 86400, usegmt=True)
    portkey.always("thread_x", Reply(status=429, headers={"Retry-After": future}))
    event = sqs_event([{"thread_id": "thread_x"}])

    # When the update is processed with 30 s left
    started = time.monotonic()
    response = invoke(event, timeout_s=30)
    elapsed = time.monotonic() - started

    # Then it is handed back after one attempt, at once, and the log says why it did not wait
    assert failed_ids(response) == all_ids(event)
    assert len(portkey.requests) == 1
    assert elapsed < 5
    [line] = retry_lines(logs)
    assert line["status"] == 429
    assert "would pass the invocation deadline" in line["error"]
    assert aws.dead_letters() == []
