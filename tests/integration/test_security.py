"""Security: what a message can and cannot reach, transport settings, least privilege, secret hygiene.

Neighbours not repeated here: tests/unit/test_models.py (thread-id patterns at the parser),
tests/unit/test_settings.py (plain-http base URLs), tests/infra/test_template.py (no IAM wildcards),
tests/integration/test_configuration.py::test_no_secret_value_appears_in_any_output (logger-level DEBUG scan).
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import json
import logging
import re
import ssl
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url
from urllib3.util.ssl_ import resolve_cert_reqs

from devstack.lambda_events import eventbridge_event, sqs_event, sqs_record
from devstack.loopback_http import LoopbackHTTPServer, serving
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import (
    API_KEY,
    CONFIG_ID,
    PROVIDER_AUTH,
    VIRTUAL_KEY,
    AwsResources,
    FunctionLogs,
    Invoker,
    failed_ids,
)
from thread_updater.errors import ConfigurationError
from thread_updater.models import InvalidUpdate, parse_sqs_body
from thread_updater.portkey import CallLimits, PortkeyClient, create_pool
from thread_updater.secret_store import CredentialStore
from thread_updater.settings import load_settings
from tools.validate_template import load_sam_template, translate

REPO_ROOT = Path(__file__).resolve().parents[2]
SETTINGS_BASE = {"PORTKEY_SECRET_ID": "portkey", "DLQ_URL": "https://sqs.us-east-1.amazonaws.com/1/dlq"}


def all_ids(event: dict[str, Any]) -> set[str]:
    return {record["messageId"] for record in event["Records"]}


# --------------------------------------------------------------------------- thread_id → request path

VALID_IDS = ["thread_abc123", "a", "A-b_9", "-", "_", "--", "t" * 128]
HOSTILE_IDS = [
    "../assistants",
    "..",
    ".",
    "a/b",
    "a/../../admin",
    "%2F",
    "..%2Fassistants",
    "a%2fb",
    "a%00",
    "a?x=1",
    "a#frag",
    "a;b",
    "a\\b",
    "a b",
    " a",
    "a\t",
    "thread\n",
    "thread\r\nHost: evil.invalid",
    "a\x00b",
    "thr\u0435ad",  # Cyrillic e
    "\uff54hread",  # full-width t
    "thread\u200b",  # zero-width space
    "a\u2215b",  # division slash
    "a\uff0fb",  # full-width solidus
    "\u0663",  # Arabic-Indic digit three
    "thread_\u00e9",
    "t" * 129,
    "t" * 100_000,
    "",
]


def test_hostile_thread_ids_never_change_the_request_path(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given one batch mixing valid ids with path-injection attempts
    bodies = [{"thread_id": thread_id, "metadata": {"k": "v"}} for thread_id in VALID_IDS + HOSTILE_IDS]
    event = sqs_event(bodies)

    # When it is processed
    response = invoke(event, timeout_s=60)

    # Then each valid id was requested exactly once, at exactly /v1/threads/<id>, and nothing else was
    assert response == {"batchItemFailures": []}
    assert sorted(request.path for request in portkey.requests) == sorted(
        f"/v1/threads/{thread_id}" for thread_id in VALID_IDS
    )
    assert all(request.method == "POST" for request in portkey.requests)
    # and every hostile id is dead-lettered as invalid, naming thread_id, without a request
    letters = {letter["message_id"]: letter for letter in aws.dead_letters()}
    hostile = [record["messageId"] for record in event["Records"][len(VALID_IDS) :]]
    assert set(letters) == set(hostile)
    for message_id in hostile:
        assert letters[message_id]["category"] == "validation"
        assert "thread_id" in letters[message_id]["error"]


@pytest.mark.parametrize("thread_id", ["thread_ok", "../assistants", "a%2Fb", "a?b", "thr\u0435ad"])
def test_eventbridge_thread_ids_cannot_change_the_request_path_either(
    thread_id: str, invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given an EventBridge event delivered directly, and the same detail inside an SQS body
    direct = eventbridge_event({"thread_id": thread_id})
    via_queue = sqs_event([eventbridge_event({"thread_id": thread_id})])

    # When both are processed
    invoke(direct)
    invoke(via_queue)

    # Then a valid id is requested at exactly its path, twice; an invalid one never reaches Portkey
    if thread_id == "thread_ok":
        assert [request.path for request in portkey.requests] == ["/v1/threads/thread_ok"] * 2
        assert aws.dead_letters() == []
    else:
        assert portkey.requests == []
        assert sorted(letter["source"] for letter in aws.dead_letters()) == ["eventbridge", "sqs"]


AWS_SECRET_KEY = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY"
BEDROCK_CONFIG = {"provider": "bedrock", "aws_secret_access_key": AWS_SECRET_KEY, "aws_region": "us-east-1"}


def _base64_inside(prefix: bytes, value: str) -> tuple[str, str]:
    """base64 of ``value`` inside a longer text after ``prefix``, and the part only the value decides."""
    raw = value.encode()
    encoded = base64.b64encode(prefix + raw + b'","more":"x"}').decode()
    return encoded, encoded[-(-8 * len(prefix) // 6) : 8 * (len(prefix) + len(raw)) // 6]


def _echoes() -> dict[str, tuple[str, str]]:
    """How upstreams echo the key: name → (text sent back, what must not come out)."""
    escaped = json.dumps(AWS_SECRET_KEY)[1:-1]
    forms = {
        "json-escaped-slash": escaped.replace("/", "\\/"),
        "unicode-escape-lower": escaped.replace("+", "\\u002b"),
        "unicode-escape-upper": escaped.replace("+", "\\u002B"),
        "percent-lower": re.sub(
            "%[0-9A-F]{2}", lambda escape: escape[0].lower(), quote(AWS_SECRET_KEY, safe="")
        ),
        "hex-lower": AWS_SECRET_KEY.encode().hex(),
        "hex-upper": AWS_SECRET_KEY.encode().hex().upper(),
    }
    echoes = {name: (form, form) for name, form in forms.items()}
    for offset in (1, 2):
        echoes[f"base64-offset-{offset}"] = _base64_inside(b'{"k":"'[:offset] + b"x" * 3, AWS_SECRET_KEY)
    return echoes


def test_a_key_echoed_in_any_encoding_reaches_neither_a_dead_letter_nor_a_log_line(
    invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given an inline Bedrock config whose AWS secret key has "/" and "+", and upstreams that echo it
    # in the request they refuse: JSON with escaped slashes (PHP's json_encode), \\u escapes in either
    # case, lower-case percent-encoding, base64 of a longer document at offsets 1 and 2, hex
    aws.put_secret({"api_key": API_KEY, "config": BEDROCK_CONFIG})
    echoes = _echoes()
    for name, (text, _) in echoes.items():
        body = f'{{"error": {{"message": "invalid request: {text}", "type": "invalid_request_error"}}}}'
        portkey.always(f"t-{name}", Reply(status=400, body=body))

    # When one update per upstream is processed
    response = invoke(sqs_event([{"thread_id": f"t-{name}"} for name in echoes]))

    # Then each is dead-lettered as rejected, with the key redacted in its letter and log line
    assert response == {"batchItemFailures": []}
    letters = aws.dead_letters()
    assert sorted(letter["thread_id"] for letter in letters) == sorted(f"t-{name}" for name in echoes)
    assert [letter["error"] for letter in letters if "[REDACTED]" not in letter["error"]] == []
    everything = json.dumps(letters) + logs.text()
    assert [name for name, (_, needle) in echoes.items() if needle in everything] == []
    assert [piece for piece in AWS_SECRET_KEY.split("/") if piece in everything] == []


URL_BUILDER = PortkeyClient(  # only its url() is used: no request, no secret fetch
    "https://api.portkey.ai/v1",
    create_pool(1, 1.0, 1.0),
    CredentialStore("unused", 0),
    limits=CallLimits(max_attempts=1, connect_timeout_s=1.0, read_timeout_s=1.0),
)


@settings(max_examples=2000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    thread_id=st.text(max_size=140) | st.from_regex(r"[A-Za-z0-9_\-./%?#;\\ ]{1,130}", fullmatch=True),
    kind=st.sampled_from(["thread", "conversation"]),
)
def test_an_accepted_thread_id_is_always_exactly_one_path_segment(thread_id: str, kind: str) -> None:
    # Given any string as a message's thread_id (or conversation_id), and the URL the client builds
    body = json.dumps({f"{kind}_id": thread_id, "metadata": {}})

    # When it is parsed
    try:
        target = parse_sqs_body(body).update.target
    except InvalidUpdate:
        return

    # Then, as urllib3 will parse the URL, the host is unchanged and the path is /v1/<kind>s/<id>
    url = parse_url(URL_BUILDER.url(target))
    assert (url.scheme, url.host, url.query, url.fragment) == ("https", "api.portkey.ai", None, None)
    assert url.path == f"/v1/{kind}s/{thread_id}"
    assert quote(target.id, safe="") == target.id


# --------------------------------------------------------------------------- PORTKEY_BASE_URL


@pytest.mark.parametrize(
    "base_url",
    [
        "http://portkey.invalid/v1",
        "http://127.0.0.1.portkey.invalid/v1",
        "http://localhost.portkey.invalid/v1",
        "http://127.0.0.1@portkey.invalid/v1",
        "http://localhost:80@portkey.invalid/v1",
        "http://0.0.0.0:8787/v1",
        "http://2130706433/v1",
        # urllib.parse reads the host after "@" (loopback); urllib3, which connects, stops the
        # authority at the backslash and connects to portkey.invalid over plain http. Fails until
        # settings._https_or_loopback also checks the URL as urllib3 parses it (reported).
        "http://portkey.invalid\\@127.0.0.1/v1",
    ],
)
def test_plain_http_to_anything_but_loopback_is_a_configuration_error_for_the_whole_batch(
    base_url: str,
    invoke: Invoker,
    portkey: PortkeyStandIn,
    aws: AwsResources,
    monkeypatch: pytest.MonkeyPatch,
    logs: FunctionLogs,
) -> None:
    # Given PORTKEY_BASE_URL is plain http to a host that is not this machine
    monkeypatch.setenv("PORTKEY_BASE_URL", base_url)
    event = sqs_event([{"thread_id": "t1"}, "not json"])

    # When a batch arrives
    response = invoke(event)

    # Then it is a configuration error: every record goes back, no request, nothing dead-lettered
    assert failed_ids(response) == all_ids(event)
    assert portkey.requests == []
    assert aws.dead_letters() == []
    assert "invalid environment: PORTKEY_BASE_URL" in logs.text()
    assert [line for line in logs.lines() if line.get("outcome") in {"success", "dead_lettered"}] == []


def _is_loopback_host(host: str | None) -> bool:
    if host is None:
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


URL_PARTS = st.sampled_from(
    ["127.0.0.1", "localhost", "[::1]", "portkey.invalid", "127.0.0.1.portkey.invalid", "0.0.0.0"]
)
URL_NOISE = st.sampled_from(["", "@", "\\", "\\@", "%5C@", "#@", "?@", ":80@", "/", "\t", ":8787", "%40"])


@settings(max_examples=3000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(
    scheme=st.sampled_from(["http", "https", "HTTP", "hTtP"]),
    first=URL_PARTS,
    noise=URL_NOISE,
    second=URL_PARTS | st.just(""),
    tail=st.sampled_from(["/v1", "", "/v1/", ":8787/v1"]),
)
def test_an_accepted_base_url_is_https_or_loopback_as_the_http_client_sees_it(
    scheme: str, first: str, noise: str, second: str, tail: str
) -> None:
    # Given a base URL built to confuse URL parsers (userinfo, backslashes, encoded delimiters).
    # Fails until settings._https_or_loopback also checks the URL as urllib3 parses it (reported).
    base_url = f"{scheme}://{first}{noise}{second}{tail}"

    # When the environment is validated
    try:
        accepted = load_settings({**SETTINGS_BASE, "PORTKEY_BASE_URL": base_url}).base_url
    except ConfigurationError:
        return

    # Then urllib3, which makes the connection, can parse it and sees https, or plain http to a
    # loopback host (a URL accepted here but unusable there fails every update as "transient")
    try:
        url = parse_url(f"{accepted}/threads/t1")
    except LocationParseError as error:
        pytest.fail(f"accepted {base_url!r}, which the HTTP client cannot parse: {error}")
    assert url.scheme == "https" or _is_loopback_host(url.host), (base_url, url.host)


# --------------------------------------------------------------------------- custom_host


@pytest.mark.parametrize(
    "body",
    [
        {"thread_id": "t1", "custom_host": "http://evil.invalid/v1"},
        {"thread_id": "t1", "x-portkey-custom-host": "http://evil.invalid/v1"},
        {"thread_id": "t1", "headers": {"x-portkey-custom-host": "http://evil.invalid/v1"}},
        {"thread_id": "t1", "tool_resources": {"custom_host": "http://evil.invalid/v1"}},
        {"thread_id": "t1", "tool_resources": {"file_search": {"custom_host": "http://evil.invalid"}}},
    ],
)
def test_a_message_carrying_a_custom_host_is_a_validation_error(
    body: dict[str, Any], invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given a message that tries to choose Portkey's upstream host (directly and via EventBridge)
    event = sqs_event([body, eventbridge_event(body)])

    # When it is processed
    assert invoke(event) == {"batchItemFailures": []}

    # Then it never reaches Portkey and is dead-lettered as invalid
    assert portkey.requests == []
    letters = aws.dead_letters()
    assert sorted(letter["message_id"] for letter in letters) == sorted(all_ids(event))
    assert {letter["category"] for letter in letters} == {"validation"}


@pytest.mark.parametrize("secret_host", [None, "http://127.0.0.1:9/v1"])
def test_only_the_secret_sets_the_custom_host_header(
    secret_host: str | None, invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given a secret with or without custom_host, and messages that mention a host where that is
    # legal data: metadata keys/values, an SQS message attribute, an extra EventBridge envelope field
    if secret_host is not None:
        aws.put_secret(
            {
                "api_key": API_KEY,
                "provider": "openai",
                "provider_auth": PROVIDER_AUTH,
                "custom_host": secret_host,
            }
        )
    hostile = "http://evil.invalid/v1"
    record = sqs_record(json.dumps({"thread_id": "t-attr"}))
    record["messageAttributes"] = {
        "x-portkey-custom-host": {"stringValue": hostile, "dataType": "String"},
        "custom_host": {"stringValue": hostile, "dataType": "String"},
    }
    envelope = eventbridge_event({"thread_id": "t-eb"})
    envelope["custom_host"] = hostile
    envelope["x-portkey-custom-host"] = hostile
    event = sqs_event(
        [
            {"thread_id": "t-meta", "metadata": {"custom_host": hostile, "x-portkey-custom-host": hostile}},
            envelope,
        ]
    )
    event["Records"].append(record)

    # When they are processed (the envelope also directly, as an EventBridge invoke)
    assert invoke(event) == {"batchItemFailures": []}
    invoke(envelope)

    # Then every update is applied, and the custom-host header is the secret's or absent, never theirs
    assert len(portkey.requests) == 4
    for request in portkey.requests:
        assert request.headers.get("x-portkey-custom-host") == secret_host
        assert all(hostile not in value for value in request.headers.values())
    stored = portkey.thread("t-meta")
    assert stored is not None
    assert stored["metadata"] == {"custom_host": hostile, "x-portkey-custom-host": hostile}


# --------------------------------------------------------------------------- TLS, timeouts, redirects


@pytest.mark.parametrize(("concurrency", "connect", "read"), [(16, 3.05, 30.0), (1, 0.1, 900.0)])
def test_the_connection_pool_verifies_tls_and_always_has_timeouts(
    concurrency: int, connect: float, read: float
) -> None:
    # Given the pool the function builds (per container) for these settings
    pool = create_pool(concurrency, connect, read)

    # Then TLS verification is not turned off anywhere, and connect and read timeouts are set
    keywords = pool.connection_pool_kw
    assert keywords.get("cert_reqs") in (None, "CERT_REQUIRED", ssl.CERT_REQUIRED)
    assert keywords.get("assert_hostname") is not False
    assert "ssl_context" not in keywords
    timeout = keywords["timeout"]
    assert isinstance(timeout, urllib3.Timeout)
    assert (timeout.connect_timeout, timeout.read_timeout) == (connect, read)
    assert keywords["retries"].redirect == 0 or keywords["retries"].total is False
    # and so does the connection it would open to Portkey
    connection = pool.connection_from_url("https://api.portkey.ai/v1")._new_conn()
    assert resolve_cert_reqs(getattr(connection, "cert_reqs", None)) == ssl.CERT_REQUIRED
    assert getattr(connection, "assert_hostname", None) is not False
    assert connection.timeout == connect


@pytest.mark.parametrize("value", ["0", "-1", "0.0", "inf", "nan", "none", "", "1e9"])
@pytest.mark.parametrize("variable", ["PORTKEY_CONNECT_TIMEOUT", "PORTKEY_READ_TIMEOUT"])
def test_timeouts_cannot_be_disabled_by_configuration(variable: str, value: str) -> None:
    with pytest.raises(ConfigurationError, match=variable):
        load_settings({**SETTINGS_BASE, variable: value})


@dataclass
class TlsServer:
    url: str
    cert_file: Path
    requests: list[str] = field(default_factory=list)


def _self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_file, key_file


class _QuietServer(LoopbackHTTPServer):
    def handle_error(self, request: Any, client_address: Any) -> None:
        """Failed handshakes are the point of the test, not errors."""


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[TlsServer]:
    """HTTPS on loopback with a self-signed certificate nobody trusts; answers 200 to any POST."""
    cert_file, key_file = _self_signed_certificate(tmp_path)
    state = TlsServer(url="", cert_file=cert_file)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            state.requests.append(self.path)
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    server = _QuietServer(("127.0.0.1", 0), Handler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    with serving(server, name="untrusted-tls"):
        state.url = f"https://127.0.0.1:{server.server_address[1]}/v1"
        yield state


def test_an_untrusted_certificate_is_refused_before_any_header_is_sent(
    invoke: Invoker,
    aws: AwsResources,
    tls_server: TlsServer,
    monkeypatch: pytest.MonkeyPatch,
    logs: FunctionLogs,
) -> None:
    # Given Portkey's URL serves a certificate no trusted CA signed (a control client that trusts it
    # gets through, so the server itself works)
    with urllib3.PoolManager(ca_certs=str(tls_server.cert_file), retries=False) as trusting:
        assert trusting.request("POST", f"{tls_server.url}/threads/control", body=b"{}").status == 200
    assert tls_server.requests == ["/v1/threads/control"]
    monkeypatch.setenv("PORTKEY_BASE_URL", tls_server.url)
    event = sqs_event([{"thread_id": "t1"}])

    # When the function sends an update there
    response = invoke(event)

    # Then the handshake fails, so no request (and no credential) reached the server; the update is
    # handed back and the log says why
    assert failed_ids(response) == all_ids(event)
    assert tls_server.requests == ["/v1/threads/control"]
    [line] = [line for line in logs.lines() if line.get("outcome") == "retry"]
    assert "CERTIFICATE_VERIFY_FAILED" in line["error"]
    assert aws.dead_letters() == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_are_not_followed_so_credentials_never_go_elsewhere(
    status: int, invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given Portkey answers with a redirect to another server
    with PortkeyStandIn() as elsewhere:
        portkey.script("t1", Reply(status=status, headers={"Location": f"{elsewhere.url}/threads/t1"}))
        event = sqs_event([{"thread_id": "t1"}])

        # When the update is processed
        response = invoke(event)

        # Then the other server saw nothing, and the update is dead-lettered as rejected with the status
        assert elsewhere.requests == []
    assert response == {"batchItemFailures": []}
    assert len(portkey.requests) == 1
    [letter] = aws.dead_letters()
    assert (letter["category"], letter["status"]) == ("rejected", status)


# --------------------------------------------------------------------------- IAM (translated template)


@pytest.fixture(scope="module")
def translated() -> dict[str, Any]:
    return translate(load_sam_template(REPO_ROOT / "template.yaml"))


def _statements(document: Any) -> list[dict[str, Any]]:
    statements = document.get("Statement", [])
    return list(statements) if isinstance(statements, list) else [statements]


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _referenced(value: Any) -> set[str]:
    """Logical ids and parameters an intrinsic-function expression refers to."""
    found: set[str] = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                target = inner[0] if isinstance(inner, list) else str(inner).split(".")[0]
                found.add(str(target))
            elif key == "Fn::Sub":
                template, variables = (inner[0], inner[1]) if isinstance(inner, list) else (inner, {})
                names = {part.split("}")[0] for part in str(template).split("${")[1:]}
                found |= {name.split(".")[0] for name in names if name not in variables}
                found |= _referenced(variables)
            else:
                found |= _referenced(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= _referenced(inner)
    return found


PSEUDO = {
    "AWS::Partition",
    "AWS::Region",
    "AWS::AccountId",
    "AWS::URLSuffix",
    "AWS::StackName",
    "AWS::NoValue",
}
# What the function's own role may do, and to what: read the one secret, send to the dead-letter queues.
_POLLING = {"SourceQueue"}
ALLOWED = {
    "secretsmanager:GetSecretValue": {"PortkeySecretArn"},
    "sqs:SendMessage": {"DeadLetterQueue", "AsyncDeadLetterQueue"},
    "sqs:SendMessage*": {"DeadLetterQueue", "AsyncDeadLetterQueue"},
    # SQSPollerPolicy on the source queue (for ChangeMessageVisibility: retry delays)
    "sqs:ChangeMessageVisibility": _POLLING,
    "sqs:ChangeMessageVisibilityBatch": _POLLING,
    "sqs:DeleteMessage": _POLLING,
    "sqs:DeleteMessageBatch": _POLLING,
    "sqs:GetQueueAttributes": _POLLING,
    "sqs:ReceiveMessage": _POLLING,
    # DynamoDBWritePolicy on the state table (the boundary narrows it to UpdateItem)
    "dynamodb:PutItem": {"ThreadStateTable"},
    "dynamodb:UpdateItem": {"ThreadStateTable"},
    "dynamodb:BatchWriteItem": {"ThreadStateTable"},
}


def test_the_function_role_may_only_use_its_secret_queues_and_state_table(
    translated: dict[str, Any],
) -> None:
    roles = [r for r in translated["Resources"].values() if r["Type"] == "AWS::IAM::Role"]
    assert roles
    for role in roles:
        props = role["Properties"]
        # only Lambda may assume it
        [trust] = _statements(props["AssumeRolePolicyDocument"])
        assert trust["Principal"] == {"Service": ["lambda.amazonaws.com"]}
        assert _as_list(trust["Action"]) == ["sts:AssumeRole"]
        # every inline permission is on the list, scoped to the secret parameter or the DLQs
        for policy in props.get("Policies", []):
            for statement in _statements(policy["PolicyDocument"]):
                for action in _as_list(statement["Action"]):
                    assert action in ALLOWED, action
                    targets = _referenced(statement["Resource"]) - PSEUDO
                    assert targets, statement
                    assert targets <= ALLOWED[action], (action, targets)
    assert not [
        r for r in translated["Resources"].values() if r["Type"] in {"AWS::IAM::User", "AWS::IAM::AccessKey"}
    ]


# The most the role may ever do (its permissions boundary): what the SQS event source mapping needs
# on the source queue, the dead letters, the secret, and the function's own log group.
BOUNDARY = {
    "sqs:ReceiveMessage": {"SourceQueue"},
    "sqs:DeleteMessage": {"SourceQueue"},
    "sqs:GetQueueAttributes": {"SourceQueue"},
    "sqs:ChangeMessageVisibility": {"SourceQueue"},
    "dynamodb:UpdateItem": {"ThreadStateTable"},
    "sqs:SendMessage": {"DeadLetterQueue", "AsyncDeadLetterQueue"},
    "secretsmanager:GetSecretValue": {"PortkeySecretArn"},
    "logs:CreateLogStream": {"FunctionLogGroup"},
    "logs:PutLogEvents": {"FunctionLogGroup"},
}


# Every AWS call the function makes (the event source mapping's own calls are the boundary's sqs rows).
FUNCTION_CALLS = {
    "secretsmanager:GetSecretValue",
    "sqs:SendMessage",
    "sqs:ChangeMessageVisibility",
    "dynamodb:UpdateItem",
}


def test_a_permissions_boundary_caps_the_role_at_its_own_queues_secret_and_log_group(
    translated: dict[str, Any],
) -> None:
    # Given the translated template, whose role carries the AWS managed policies SAM attaches for the
    # SQS poller and for logging (both grant on Resource "*")
    resources = translated["Resources"]
    [role] = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    boundary = role["Properties"]["PermissionsBoundary"]
    assert _referenced(boundary) == {"FunctionPermissionsBoundary"}

    # When its permissions boundary is read
    document = resources["FunctionPermissionsBoundary"]["Properties"]["PolicyDocument"]
    granted: dict[str, set[str]] = {}
    for statement in _statements(document):
        assert statement["Effect"] == "Allow"
        assert "*" not in json.dumps(statement["Resource"]), statement
        for action in _as_list(statement["Action"]):
            granted.setdefault(action, set()).update(_referenced(statement["Resource"]) - PSEUDO)

    # Then it allows exactly what the function needs, each on this stack's own resources only
    assert granted == BOUNDARY
    # and every call the function makes is in the role's own policies and survives the boundary
    own = {
        action
        for policy in role["Properties"].get("Policies", [])
        for statement in _statements(policy["PolicyDocument"])
        for action in _as_list(statement["Action"])
    }
    for action in FUNCTION_CALLS:
        assert action in own, action
        assert action in granted, action
    # and the function logs to the group the boundary names
    [function] = [r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"]
    assert _referenced(function["Properties"]["LoggingConfig"]["LogGroup"]) == {"FunctionLogGroup"}


def test_resource_policies_name_a_service_and_the_exact_source(translated: dict[str, Any]) -> None:
    checked = 0
    for resource in translated["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::SQS::QueuePolicy":
            for statement in _statements(props["PolicyDocument"]):
                principal = statement["Principal"]
                assert principal != "*"
                assert isinstance(principal, dict)
                assert set(principal) == {"Service"}, principal
                condition = json.dumps(statement.get("Condition", {}))
                assert "aws:SourceArn" in condition or "aws:SourceAccount" in condition, statement
                checked += 1
        elif resource["Type"] == "AWS::Lambda::Permission":
            assert props["Principal"] not in {"*", ""}
            assert "SourceArn" in props or "SourceAccount" in props, props
            checked += 1
    assert checked >= 2


# --------------------------------------------------------------------------- secrets in the output

CONFIG_SECRET = "cfg-override-secret-4411"
CUSTOM_HOST = "http://127.0.0.1:9/v1/custom-host-secret-7788"
ROTATED_KEY = "pk-rotated-key-3c2b1a"
INJECTED = "sk-injected-value-9999"
CONFIG_OBJECT: dict[str, Any] = {
    "provider": "azure-openai",
    "api_key": PROVIDER_AUTH,
    "override_params": {"user": CONFIG_SECRET},
}
SECRETS_IN_PLAY: list[dict[str, Any]] = [
    {"api_key": API_KEY, "virtual_key": VIRTUAL_KEY},
    {"api_key": API_KEY, "provider": "azure-openai", "provider_auth": PROVIDER_AUTH},
    {"api_key": API_KEY, "config": CONFIG_ID},
    {"api_key": API_KEY, "config": CONFIG_OBJECT},
    {"api_key": API_KEY, "provider": "openai", "provider_auth": PROVIDER_AUTH, "custom_host": CUSTOM_HOST},
]


def _needles() -> list[str]:
    values = [
        API_KEY,
        VIRTUAL_KEY,
        PROVIDER_AUTH,
        CONFIG_ID,
        CONFIG_SECRET,
        CUSTOM_HOST,
        ROTATED_KEY,
        INJECTED,
    ]
    values.append(json.dumps(CONFIG_OBJECT, separators=(",", ":")))
    forms = []
    for value in values:
        forms += [
            value,
            json.dumps(value)[1:-1],
            quote(value, safe=""),
            base64.b64encode(value.encode()).decode(),
        ]
    return forms


def test_no_credential_reaches_any_output_with_every_logger_at_debug(
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    logs: FunctionLogs,
) -> None:
    # Given Lambda's ApplicationLogLevel=DEBUG (the root logger at DEBUG) and the function's own
    # logger at DEBUG (conftest's debug_logging, as for every test), a secret cache that expires at
    # once (every invocation reads the secret)
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "0")
    raised: list[str] = []

    def run(event: dict[str, Any]) -> None:
        try:
            invoke(event)
        except Exception as error:
            raised.append("".join(traceback.format_exception(error)) + repr(error))

    portkey.always("t-404", Reply(status=404))
    portkey.always("t-503", Reply(status=503, headers={"Retry-After": "0"}))
    # and upstreams that echo the request's headers (credentials included) in their error text: a
    # rejected update (dead letter), a transient one (log, EventBridge exception), an account-level
    # answer and refused credentials (configuration errors)
    portkey.always("t-echo-400", Reply(status=400, echo_headers=True))
    portkey.always("t-echo-503", Reply(status=503, echo_headers=True, headers={"Retry-After": "0"}))
    portkey.always("t-echo-412", Reply(status=412, echo_headers=True))
    portkey.always("t-echo-401", Reply(status=401, echo_headers=True))
    # When every routing mode applies, rejects, retries and dead-letters updates (SQS and EventBridge)
    for secret in SECRETS_IN_PLAY:
        aws.put_secret(secret)
        run(sqs_event([{"thread_id": "t-ok"}, {"thread_id": "t-404"}, {"thread_id": "t-503"}, "not json"]))
        run(eventbridge_event({"thread_id": "t-503"}))
        run(eventbridge_event({"thread_id": "bad id"}))
        run(sqs_event([{"thread_id": "t-echo-400"}, {"thread_id": "t-echo-503"}]))
        run(eventbridge_event({"thread_id": "t-echo-503"}))
        run(sqs_event([{"thread_id": "t-echo-412"}]))
        run(eventbridge_event({"thread_id": "t-echo-401"}))
    # and the key is rotated in a warm container that cached the old one (401, refresh, retry)
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "300")
    aws.put_secret({"api_key": API_KEY, "virtual_key": VIRTUAL_KEY})
    run(sqs_event([{"thread_id": "t-warm"}]))
    aws.put_secret({"api_key": ROTATED_KEY, "virtual_key": VIRTUAL_KEY})
    portkey.set_api_keys({ROTATED_KEY})
    run(sqs_event([{"thread_id": "t-rotated"}]))
    monkeypatch.setenv("POWERTOOLS_PARAMETERS_MAX_AGE", "0")
    # and then refused even after a refresh, and finally configuration errors carrying values
    portkey.set_api_keys({"somebody-elses-key"})
    run(sqs_event([{"thread_id": "t-refused"}]))
    run(eventbridge_event({"thread_id": "t-refused"}))
    aws.put_secret({"api_key": API_KEY, "provider": "openai", "provider_auth": f"{INJECTED}\r\nX-Evil: 1"})
    run(sqs_event([{"thread_id": "t-1"}]))
    aws.put_secret({"api_key": API_KEY, "virtual_key": VIRTUAL_KEY, "config": CONFIG_OBJECT})
    run(sqs_event([{"thread_id": "t-1"}]))
    aws.put_secret(json.dumps({"api_key": API_KEY, "virtual_key": VIRTUAL_KEY})[:-1])
    run(eventbridge_event({"thread_id": "t-1"}))

    captured = capfd.readouterr()
    formatter = logging.Formatter()
    outputs = [captured.out, captured.err, caplog.text, logs.text(), *raised]
    outputs += [formatter.formatException(r.exc_info) for r in caplog.records if r.exc_info]
    outputs += [str(r.__dict__) for r in caplog.records]
    outputs += [json.dumps(letter) for letter in aws.dead_letters()]
    everything = "\n".join(outputs)

    # Then the scan really covered every outcome, botocore's and urllib3's records included...
    rotated = portkey.requests_for("t-rotated")
    assert [request.status for request in rotated] == [401, 200]
    for expected in (
        "update success",
        "update dead_lettered",
        "update retry",
        "refused the credentials",
        "must be printable ASCII",
        "mix or do not form a routing mode",
        "not valid JSON",
        '"_aws"',
        "Request headers",
        "budget or usage limit exhausted",
        "[REDACTED]",
    ):
        assert expected in everything, expected
    assert any(record.name.startswith("botocore") for record in caplog.records)
    # ...the libraries that carry credentials stayed above DEBUG (botocore logs SecretString there)...
    assert not [
        record.name
        for record in caplog.records
        if record.name.split(".")[0] in {"botocore", "boto3", "urllib3", "s3transfer"}
        and record.levelno < logging.INFO
    ]
    # ...and no credential, in any encoding, appears anywhere
    leaked = [needle for needle in _needles() if needle in everything]
    assert leaked == []
