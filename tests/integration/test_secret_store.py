"""Secrets Manager that is slow, unreachable or failing: the batch keeps its deadline and nothing is lost.

Secrets Manager is a loopback stand-in here (boto3's service-specific endpoint variable sends only
Secrets Manager calls to it; the DLQ stays on moto), because moto always answers at once.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any, Literal

import pytest

from devstack.lambda_events import LocalContext, sqs_event
from devstack.loopback_http import LoopbackHTTPServer, serving
from devstack.portkey_standin import PortkeyStandIn
from tests.conftest import DEFAULT_SECRET, DrippingProxy, FunctionLogs, failed_ids, invoke_with
from thread_updater import aws as aws_calls
from thread_updater.secret_store import READ_ATTEMPT_S, STALE_GRACE_S

Mode = Literal["answer", "fail", "hang"]


@dataclass
class SecretsManagerStandIn:
    """GetSecretValue answered with DEFAULT_SECRET, failed with a 500, or accepted and never answered."""

    url: str = ""
    mode: Mode = "answer"
    requests: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def secrets_manager(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretsManagerStandIn]:
    state = SecretsManagerStandIn()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            with state.lock:
                state.requests += 1
            if state.mode == "hang":
                state.release.wait(timeout=60)  # bounded; released when the fixture ends
                return
            if state.mode == "fail":
                status, document = 500, {"__type": "InternalServiceError", "message": "try again"}
            else:
                status, document = (
                    200,
                    {"Name": "s", "VersionId": "v1", "SecretString": json.dumps(DEFAULT_SECRET)},
                )
            answer = json.dumps(document).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
    with serving(server, name="secrets-manager-standin"):
        state.url = f"http://127.0.0.1:{server.server_address[1]}"
        monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", state.url)
        try:
            yield state
        finally:
            state.release.set()


def emf_total(stdout: str, name: str) -> float:
    documents = [json.loads(line) for line in stdout.splitlines() if line.startswith('{"_aws"')]
    return sum(sum(value) if isinstance(value, list) else value for d in documents if (value := d.get(name)))


def test_a_secrets_manager_that_never_answers_cannot_keep_the_batch_past_its_deadline(
    function_env: dict[str, str],
    secrets_manager: SecretsManagerStandIn,
    monkeypatch: pytest.MonkeyPatch,
    logs: FunctionLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a Secrets Manager that accepts connections and never answers, a cold container with
    # 16 workers, and a batch of 16 threads (each worker needs the secret at once)
    secrets_manager.mode = "hang"
    monkeypatch.setenv("MAX_CONCURRENCY", "16")
    event = sqs_event([{"thread_id": f"t{index}"} for index in range(16)])
    context = LocalContext(timeout_s=20)

    # When the batch is processed
    response = invoke_with(event, context)

    # Then the handler answered before Lambda's deadline, with every record handed back
    assert context.get_remaining_time_in_millis() > 0
    assert failed_ids(response) == {record["messageId"] for record in event["Records"]}
    # after one read of the secret (its bounded attempts), shared by all 16 workers
    assert secrets_manager.requests == aws_calls.MAX_ATTEMPTS
    # and the configuration error was logged once and counted
    errors = [line for line in logs.lines() if line["level"] == "ERROR"]
    assert len(errors) == 1
    assert "could not be read" in errors[0]["error"]
    assert emf_total(capsys.readouterr().out, "ConfigurationErrors") == 1


def test_a_secrets_manager_answer_trickling_in_cannot_keep_the_batch_past_its_deadline(
    function_env: dict[str, str],
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    dripping_aws: Callable[[float], DrippingProxy],
    logs: FunctionLogs,
) -> None:
    # Given a cold container whose Secrets Manager sends its answer one byte every half second (each
    # read well within botocore's 2 s read timeout; the whole answer takes minutes), and 20 s to go
    proxy = dripping_aws(0.5)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SECRETS_MANAGER", proxy.url)
    event = sqs_event([{"thread_id": "t1"}, {"thread_id": "t2"}])
    context = LocalContext(timeout_s=20)

    # When the batch is processed
    response = invoke_with(event, context)

    # Then the handler answered before Lambda's deadline, with every record handed back: each read was
    # cut at its worst case (READ_ATTEMPT_S), the retry too, and nothing was sent to Portkey
    assert context.get_remaining_time_in_millis() > 0
    assert failed_ids(response) == {record["messageId"] for record in event["Records"]}
    assert proxy.requests == aws_calls.MAX_ATTEMPTS
    assert portkey.requests == []
    [error] = [line for line in logs.lines() if line["level"] == "ERROR"]
    assert "ReadTimeoutError" in error["error"]


def test_no_secrets_manager_call_starts_without_time_to_finish_it(
    function_env: dict[str, str],
    secrets_manager: SecretsManagerStandIn,
    portkey: PortkeyStandIn,
    logs: FunctionLogs,
) -> None:
    # Given a cold container and an invocation with less time left (after the function's margin) than
    # one Secrets Manager request may take
    context = LocalContext(timeout_s=READ_ATTEMPT_S)
    event = sqs_event([{"thread_id": "t1"}])

    # When the batch is processed
    response = invoke_with(event, context)

    # Then Secrets Manager and Portkey are not called, the record is handed back as out of time,
    # and it is not mistaken for a configuration error
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert secrets_manager.requests == 0
    assert portkey.requests == []
    [line] = [line for line in logs.lines() if "outcome" in line]
    assert line["outcome"] == "retry"
    assert "not enough time left" in line["error"]


def test_a_transient_failure_after_expiry_serves_the_last_good_credentials_and_says_so(
    function_env: dict[str, str],
    secrets_manager: SecretsManagerStandIn,
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    logs: FunctionLogs,
) -> None:
    # Given a warm container whose cached credentials expire at once
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "0")
    assert invoke_with(sqs_event([{"thread_id": "t-warm"}]), LocalContext(timeout_s=30)) == {
        "batchItemFailures": []
    }
    assert secrets_manager.requests == 1

    # When Secrets Manager starts failing (HTTP 500) and two batches arrive
    secrets_manager.mode = "fail"
    first = invoke_with(sqs_event([{"thread_id": "t1"}, {"thread_id": "t2"}]), LocalContext(timeout_s=30))
    second = invoke_with(sqs_event([{"thread_id": "t3"}]), LocalContext(timeout_s=30))

    # Then every update is applied with the last good credentials instead of failing the batches
    assert first == second == {"batchItemFailures": []}
    assert {request.thread_id for request in portkey.requests} == {"t-warm", "t1", "t2", "t3"}
    # after one failed read (its bounded attempts); the next read waits STALE_RETRY_S
    assert secrets_manager.requests == 1 + aws_calls.MAX_ATTEMPTS
    # and a WARNING says so, with how long the cached credentials may still be served
    [warning] = [line for line in logs.lines() if "serving the cached" in line["message"]]
    assert warning["level"] == "WARNING"
    assert "InternalServiceError" in warning["error"]
    assert 0 < warning["served_stale_for_at_most_s"] <= STALE_GRACE_S
    assert not [line for line in logs.lines() if line["level"] == "ERROR"]
