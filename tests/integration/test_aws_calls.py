"""The function's own SQS calls against an AWS that answers too slowly, and botocore's retries.

Each call (``thread_updater.aws.LazyClient``) ends by a bound of its own whatever the answer's pace:
an answer dripping in one byte every half second (``tests.conftest.DrippingProxy`` in front of moto)
is cut, and botocore does not retry when its backoff and one attempt no longer fit. Neighbours:
tests/integration/test_secret_store.py and tests/integration/test_ordering.py (Secrets Manager and
DynamoDB answers dripping in), tests/integration/test_misconfiguration.py (SQS throttling).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from typing import Any

import pytest
from botocore.exceptions import ClientError

from devstack.lambda_events import LocalContext, sqs_event
from devstack.loopback_http import LoopbackHTTPServer, serving
from devstack.poller import lambda_record
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import AwsResources, DrippingProxy, FunctionLogs, failed_ids, invoke_with
from thread_updater import aws as aws_calls
from thread_updater.deadline_io import bounded_by


@pytest.mark.usefixtures("function_env")
def test_a_dead_letter_send_trickling_in_cannot_keep_the_batch_past_its_deadline(
    aws: AwsResources,
    monkeypatch: pytest.MonkeyPatch,
    dripping_aws: Callable[[float], DrippingProxy],
    logs: FunctionLogs,
) -> None:
    # Given SQS behind an endpoint that sends its answers one byte every half second (each read well
    # within botocore's 2 s read timeout; a whole answer takes minutes), and 20 s to go
    proxy = dripping_aws(0.5)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
    event = sqs_event(["not json"])
    context = LocalContext(timeout_s=20)

    # When an invalid message must be dead-lettered
    response = invoke_with(event, context)

    # Then the handler answered before Lambda's deadline with the record handed back: the send was
    # cut at its worst case and not retried (its outcome is unknown, so the record is not dropped)
    assert context.get_remaining_time_in_millis() > 0
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert proxy.requests == 1
    [line] = [line for line in logs.lines() if line.get("outcome") == "retry"]
    assert "dead-letter queue send failed" in line["error"]
    assert "Read timeout" in line["error"]


@pytest.mark.usefixtures("function_env")
def test_a_retry_delay_trickling_in_cannot_keep_the_batch_past_its_deadline(
    aws: AwsResources,
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    dripping_aws: Callable[[float], DrippingProxy],
    logs: FunctionLogs,
) -> None:
    # Given a record received from a real queue whose update fails transiently (a 503), SQS behind an
    # endpoint that sends its answers one byte every half second, and 20 s to go
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=json.dumps({"thread_id": "thread_slow_sqs"}))
    [message] = aws.sqs.receive_message(QueueUrl=aws.queue_url, AttributeNames=["All"])["Messages"]
    arn = aws.sqs.get_queue_attributes(QueueUrl=aws.queue_url, AttributeNames=["QueueArn"])["Attributes"]
    portkey.script("thread_slow_sqs", Reply(status=503))
    proxy = dripping_aws(0.5)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SQS", proxy.url)
    context = LocalContext(timeout_s=20)

    # When the function hands the record back with a retry delay of its own
    response = invoke_with({"Records": [lambda_record(message, arn["QueueArn"])]}, context)

    # Then the handler answered before Lambda's deadline, the record handed back: the visibility
    # change was cut at its worst case and not retried, and the log says the delay may not be set
    assert context.get_remaining_time_in_millis() > 0
    assert failed_ids(response) == {message["MessageId"]}
    assert proxy.requests == 1
    [warning] = [line for line in logs.lines() if line["message"] == "could not set retry delays"]
    assert "Read timeout" in warning["error"]


class _Throttling(BaseHTTPRequestHandler):
    """Answers every DynamoDB call at once with a ThrottlingException (retryable), optionally asking
    for a wait with ``x-amz-retry-after``; counts the requests."""

    server: _ThrottlingServer

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.requests += 1
        body = json.dumps({"__type": "com.amazonaws.dynamodb.v20120810#ThrottlingException"}).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        if self.server.retry_after_ms is not None:
            self.send_header("x-amz-retry-after", str(self.server.retry_after_ms))
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


class _ThrottlingServer(LoopbackHTTPServer):
    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Throttling)
        self.lock = threading.Lock()
        self.requests = 0
        self.retry_after_ms: int | None = None


@pytest.fixture
def throttling_dynamodb(monkeypatch: pytest.MonkeyPatch, moto_endpoint: str) -> Iterator[_ThrottlingServer]:
    server = _ThrottlingServer()
    with serving(server, "throttling-dynamodb"):
        monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", f"http://127.0.0.1:{server.server_port}")
        yield server


@pytest.mark.parametrize(
    ("bound_s", "retry_after_ms", "retries"),
    [
        (30.0, None, 1),  # time for botocore's backoff (< 1 s) and an attempt (3 s): it retries
        (3.5, None, 0),  # no longer time for both
        (7.0, 5000, 0),  # time for both, but not for the 5 s more the answer asks to wait
    ],
    ids=["retried-with-time-to-spare", "no-retry-without-time-for-it", "no-retry-without-time-to-wait"],
)
def test_botocore_retries_only_while_its_backoff_and_an_attempt_fit_in_the_bound(
    throttling_dynamodb: _ThrottlingServer, bound_s: float, retry_after_ms: int | None, retries: int
) -> None:
    # Given DynamoDB throttles every call at once, and a call bounded to ``bound_s``
    throttling_dynamodb.retry_after_ms = retry_after_ms
    client = aws_calls.LazyClient("dynamodb")()

    # When a call is made
    with bounded_by(time.monotonic() + bound_s), pytest.raises(ClientError) as raised:
        client.describe_table(TableName="thread-state")

    # Then botocore retried only if a whole retry fitted; the throttling error is what the caller sees
    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == retries
    assert throttling_dynamodb.requests == 1 + retries
