"""Shared fixtures: moto in server mode over real HTTP, the Portkey stand-in, and an invoker.

boto3 reaches moto through ``AWS_ENDPOINT_URL`` exactly as it would reach AWS; nothing of the
project is patched. Every server started here is stopped when its fixture ends.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import pytest
from mypy_boto3_secretsmanager import SecretsManagerClient
from mypy_boto3_sqs import SQSClient

from devstack.lambda_events import LocalContext
from devstack.local_aws import LOCAL_AWS_ENV, create_state_table, moto_server
from devstack.loopback_http import LoopbackHTTPServer, serving
from devstack.portkey_standin import PortkeyStandIn

API_KEY = "pk-live-api-key-0f9e8d7c6b5a"
VIRTUAL_KEY = "vk-azure-openai-1a2b3c4d"
PROVIDER_AUTH = "sk-provider-secret-9z8y7x6w"
CONFIG_ID = "pc-config-secret-5566"
SECRET_VALUES = (API_KEY, VIRTUAL_KEY, PROVIDER_AUTH, CONFIG_ID)
SECRET_NAMES = ("API_KEY", "VIRTUAL_KEY", "PROVIDER_AUTH", "CONFIG_ID")
DEFAULT_SECRET: dict[str, Any] = {"api_key": API_KEY, "virtual_key": VIRTUAL_KEY}
AWS_ENV = LOCAL_AWS_ENV

pytest.register_assert_rewrite("tests.samples")


def in_ci() -> bool:
    """Whether this runs in CI (``CI`` set and not false), where missing tools fail instead of skip."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(autouse=True)
def debug_logging() -> Iterator[None]:
    """Every test runs as Lambda does with ApplicationLogLevel=DEBUG (the root logger at DEBUG) and the
    function's own logger at DEBUG, so the credential scan below sees the most the function can say."""
    from thread_updater.observability import logger

    root = logging.getLogger()
    saved_root, saved_function = root.level, logger.log_level
    root.setLevel(logging.DEBUG)
    logger.setLevel(logging.DEBUG)
    yield
    root.setLevel(saved_root)
    logger.setLevel(saved_function)


@pytest.fixture(autouse=True)
def fresh_metrics() -> None:
    """Each test starts with no metric pending: one that a test added without a handler flush (a unit
    test of the processor, say) must not be counted in the next test's EMF document."""
    from thread_updater.observability import metrics

    metrics.clear_metrics()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The ``slow`` tests (minutes of CPU each) first, the rest in their order: xdist hands out work in
    collection order, so a parallel run starts the long ones at once instead of ending on one of them."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """The whole suite is also a secret scan: a test whose captured stdout, stderr or log records (at
    DEBUG, see debug_logging) contain a value of the test secret fails, whatever it asserted."""
    outcome: Any = yield
    report: pytest.TestReport = outcome.get_result()
    leaked = [
        name
        for name, value in zip(SECRET_NAMES, SECRET_VALUES, strict=True)
        if any(value in content for title, content in report.sections if title.endswith(report.when))
    ]
    if leaked and report.passed:
        report.outcome = "failed"
        report.longrepr = f"credential values in the captured output of {report.when}: {', '.join(leaked)}"


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """One moto server for the session; tests isolate themselves with unique resource names."""
    with moto_server() as endpoint:
        yield endpoint


@dataclass
class AwsResources:
    """The function's AWS side for one test: a secret, a source queue and its DLQ."""

    sqs: SQSClient
    secrets: SecretsManagerClient
    secret_id: str
    queue_url: str
    dlq_url: str

    def put_secret(self, value: Mapping[str, Any] | str) -> None:
        text = value if isinstance(value, str) else json.dumps(value)
        self.secrets.put_secret_value(SecretId=self.secret_id, SecretString=text)

    def dead_letters(self, *, max_messages: int = 1000) -> list[dict[str, Any]]:
        """Every message in the DLQ (bounded), bodies decoded, message attributes under ``_attributes``."""
        found: list[dict[str, Any]] = []
        for _ in range(max_messages // 10 + 1):
            answer = self.sqs.receive_message(
                QueueUrl=self.dlq_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                VisibilityTimeout=300,
            )
            messages = answer.get("Messages", [])
            if not messages:
                break
            for message in messages:
                document = json.loads(message["Body"])
                document["_attributes"] = {
                    name: value.get("StringValue")
                    for name, value in message.get("MessageAttributes", {}).items()
                }
                found.append(document)
        return found


@pytest.fixture
def aws(moto_endpoint: str) -> AwsResources:
    suffix = uuid.uuid4().hex[:10]
    sqs: SQSClient = boto3.client("sqs")
    secrets: SecretsManagerClient = boto3.client("secretsmanager")
    dlq_url = sqs.create_queue(QueueName=f"dlq-{suffix}")["QueueUrl"]
    queue_url = sqs.create_queue(QueueName=f"updates-{suffix}")["QueueUrl"]
    secret_id = f"portkey-{suffix}"
    secrets.create_secret(Name=secret_id, SecretString=json.dumps(DEFAULT_SECRET))
    return AwsResources(sqs, secrets, secret_id, queue_url, dlq_url)


@pytest.fixture
def portkey() -> Iterator[PortkeyStandIn]:
    with PortkeyStandIn() as server:
        yield server


@pytest.fixture
def function_env(
    monkeypatch: pytest.MonkeyPatch, aws: AwsResources, portkey: PortkeyStandIn
) -> dict[str, str]:
    """The function's environment, pointing at this test's moto resources and stand-in."""
    env = {
        "PORTKEY_SECRET_ID": aws.secret_id,
        "PORTKEY_BASE_URL": portkey.url,
        "DLQ_URL": aws.dlq_url,
        "MAX_ATTEMPTS": "3",
        "MAX_CONCURRENCY": "4",
        "POWERTOOLS_SERVICE_NAME": "portkey-thread-updater",
        "POWERTOOLS_METRICS_NAMESPACE": "PortkeyThreadUpdater",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def state_table(function_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh per-thread state table in moto, configured for the function; no lease grace and no
    heal delay, so a test never has to wait for time to pass (tests that need them set their own)."""
    name = create_state_table(f"thread-state-{uuid.uuid4().hex[:10]}")
    monkeypatch.setenv("THREAD_STATE_TABLE", name)
    monkeypatch.setenv("THREAD_LEASE_GRACE_SECONDS", "0")
    monkeypatch.setenv("LATE_WRITE_HEAL_DELAY_SECONDS", "0")
    return name


class _AwsErrorHandler(BaseHTTPRequestHandler):
    """Answers every AWS JSON-protocol call with the error code named by the server."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        code: str = self.server.error_code  # type: ignore[attr-defined]
        status = 500 if code.startswith("InternalServer") else 400
        body = json.dumps({"__type": f"com.amazonaws.dynamodb.v20120810#{code}", "message": code}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def dynamodb_answering() -> Iterator[Callable[[str], str]]:
    """A DynamoDB endpoint on loopback that answers every call with one error code (throttling,
    access denied, ...), as the real service would; returns its URL for ``AWS_ENDPOINT_URL_DYNAMODB``."""
    with contextlib.ExitStack() as stack:

        def start(code: str) -> str:
            server = LoopbackHTTPServer(("127.0.0.1", 0), _AwsErrorHandler)
            server.error_code = code  # type: ignore[attr-defined]
            stack.enter_context(serving(server, "dynamodb-errors"))
            return f"http://127.0.0.1:{server.server_port}"

        yield start


class DrippingProxy(LoopbackHTTPServer):
    """Forwards each AWS call to moto and sends moto's whole answer back one byte every ``pause_s``:
    an AWS endpoint that answers, each byte well within any read timeout, but never in time."""

    def __init__(self, moto_endpoint: str, pause_s: float) -> None:
        super().__init__(("127.0.0.1", 0), _DrippingProxyHandler)
        target = urllib.parse.urlsplit(moto_endpoint)
        self.target_host, self.target_port = target.hostname or "127.0.0.1", target.port
        self.pause_s = pause_s
        self.stopping = threading.Event()
        self.requests = 0
        self.url = f"http://127.0.0.1:{self.server_port}"


class _DrippingProxyHandler(BaseHTTPRequestHandler):
    server: DrippingProxy

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.requests += 1
        upstream = http.client.HTTPConnection(self.server.target_host, self.server.target_port, timeout=10)
        try:
            upstream.request("POST", self.path, body=body, headers=dict(self.headers.items()))
            answer = upstream.getresponse()
            data = answer.read()
        finally:
            upstream.close()
        kept = [(name, value) for name, value in answer.getheaders() if name.lower() not in _HOP_HEADERS]
        head = f"HTTP/1.1 {answer.status} {answer.reason}\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in kept)
        head += f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        raw = head.encode("latin-1") + data
        self.close_connection = True
        for index in range(len(raw)):  # bounded: the answer's length, or until the fixture stops
            if self.server.stopping.wait(self.server.pause_s):
                return
            self.wfile.write(raw[index : index + 1])
            self.wfile.flush()

    def log_message(self, *args: Any) -> None:
        pass


_HOP_HEADERS = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})


@pytest.fixture
def dripping_aws(moto_endpoint: str) -> Iterator[Callable[[float], DrippingProxy]]:
    """Start a ``DrippingProxy`` in front of moto (point ``AWS_ENDPOINT_URL_<SERVICE>`` at its url);
    its drips stop, and it shuts down, when the test ends."""
    with contextlib.ExitStack() as stack:

        def start(pause_s: float) -> DrippingProxy:
            proxy = DrippingProxy(moto_endpoint, pause_s)
            stack.enter_context(serving(proxy, "dripping-aws"))
            stack.callback(proxy.stopping.set)  # runs first: the drips end, then the server stops
            return proxy

        yield start


def invoke_with(event: Mapping[str, Any], context: LocalContext) -> Any:
    """The real handler, called with ``context`` (a test that checks the deadline keeps it)."""
    from handler import lambda_handler

    return lambda_handler(dict(event), context)


class Invoker:
    """Calls the real handler the way Lambda does: an event and a context with a deadline."""

    def __init__(self, timeout_s: float = 30.0) -> None:
        self.timeout_s = timeout_s

    def __call__(self, event: Mapping[str, Any], *, timeout_s: float | None = None) -> Any:
        return invoke_with(event, LocalContext(timeout_s=timeout_s or self.timeout_s))


@pytest.fixture
def invoke(function_env: dict[str, str]) -> Invoker:
    return Invoker()


def failed_ids(response: Mapping[str, Any]) -> set[str]:
    return {item["itemIdentifier"] for item in response["batchItemFailures"]}


class FunctionLogs:
    """The function's log lines, rendered by its own Powertools JSON formatter.

    Read through ``caplog`` because Powertools' handler keeps the stdout it saw first, which under
    pytest is an earlier test's capture buffer.
    """

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def lines(self) -> list[dict[str, Any]]:
        from thread_updater.observability import SERVICE, logger

        formatter = logger.registered_formatter
        return [
            json.loads(formatter.format(record)) for record in self._caplog.records if record.name == SERVICE
        ]

    def text(self) -> str:
        return "\n".join(json.dumps(line) for line in self.lines())


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> FunctionLogs:
    caplog.set_level(logging.DEBUG)
    return FunctionLogs(caplog)
