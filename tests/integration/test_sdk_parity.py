"""Wire parity with the Portkey SDK: our function's request is the one ``portkey-ai`` sends.

For every routing mode of the secret (tests/integration/test_configuration.py's ``MODES``, which must
cover every ``RoutingMode``), one update goes through the real handler (moto, the Portkey stand-in)
and the same update through ``Portkey(...).conversations.update`` (and ``beta.threads.update``) to the
same stand-in; the two requests it recorded must agree on method, path, body, the routing headers,
``Authorization`` and ``OpenAI-Beta`` (absent for a conversation, ``assistants=v2`` for a thread).

``portkey-ai`` is a development dependency (requirements-dev.txt), never a runtime one: it is imported
here only, because importing it takes about two seconds.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from portkey_ai import Portkey

from devstack.lambda_events import sqs_event
from devstack.portkey_standin import PortkeyStandIn, RecordedRequest
from tests.conftest import API_KEY, CONFIG_ID, PROVIDER_AUTH, VIRTUAL_KEY, AwsResources, Invoker
from tests.integration.test_configuration import MODES
from thread_updater.credentials import RoutingMode, credentials_from_secret

# The same routing, as SDK arguments, for each of test_configuration's secrets.
SDK_ROUTING: dict[str, dict[str, Any]] = {
    "virtual-key": {"virtual_key": VIRTUAL_KEY},
    "provider-auth": {"provider": "azure-openai", "Authorization": f"Bearer {PROVIDER_AUTH}"},
    "config-id": {"config": CONFIG_ID},
    "config-object": {"config": {"provider": "azure-openai", "api_key": PROVIDER_AUTH}},
    "custom-host": {
        "provider": "openai",
        "Authorization": f"Bearer {PROVIDER_AUTH}",
        "custom_host": "http://127.0.0.1:9/v1",
    },
    "catalog": {"provider": "@azure-prod"},
}

# Headers that legitimately differ between two HTTP clients, left out of the comparison:
NORMALISED = {
    # the HTTP client's own: which library, what it accepts back, keep-alive, the body's byte count
    # (the bodies are compared parsed)
    "user-agent",
    "accept",
    "accept-encoding",
    "connection",
    "content-length",
    # the SDK's telemetry about itself (its version, the Python running it, its retry state)
    "x-portkey-package-version",
    "x-portkey-runtime",
    "x-portkey-runtime-version",
    "x-stainless-lang",
    "x-stainless-package-version",
    "x-stainless-os",
    "x-stainless-arch",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-async",
    "x-stainless-raw-response",
    "x-stainless-retry-count",
    "x-stainless-read-timeout",
    # the SDK's default "false" lets the gateway add non-OpenAI fields to an answer's body; it routes
    # nothing and changes no request, and the function reads only an answer's status and error message
    "x-portkey-strict-open-ai-compliance",
}
# The vendored OpenAI client always sends an API key; without one of ours the SDK fills in this
# placeholder, which routes nothing (the virtual key, config or catalog provider carries the provider
# credentials). The function sends no Authorization at all in those modes.
SDK_PLACEHOLDER_AUTHORIZATION = "Bearer OPENAI_API_KEY"
METADATA = {"stage": "migrated", "owner": "ops"}
ROOT = Path(__file__).resolve().parents[2]


def compared(request: RecordedRequest) -> dict[str, Any]:
    """What must agree: method, path, parsed body, and every header but the normalised ones; an
    inline config compared parsed (ours is compact JSON, the SDK's has spaces after separators)."""
    headers = {name: value for name, value in request.headers.items() if name not in NORMALISED}
    if headers.get("authorization") == SDK_PLACEHOLDER_AUTHORIZATION:
        del headers["authorization"]
    if headers.get("x-portkey-config", "").startswith("{"):
        headers["x-portkey-config"] = json.loads(headers["x-portkey-config"])
    return {"method": request.method, "path": request.path, "json": request.json, "headers": headers}


def test_the_sdk_routing_covers_every_mode_of_the_secret() -> None:
    # Given test_configuration's secrets and this module's SDK arguments
    modes = {credentials_from_secret({"api_key": API_KEY, **MODES[name][0]}).mode for name in MODES}

    # Then there are SDK arguments for each secret, and the secrets cover every routing mode
    assert set(SDK_ROUTING) == set(MODES)
    assert modes == set(RoutingMode)


def pins(path: Path) -> dict[str, str]:
    """``name: version`` of each ``name==version`` line of a requirements file."""
    found = re.findall(r"^([A-Za-z0-9_.\[\],-]+)==(\S+)", path.read_text(), flags=re.MULTILINE)
    return {name.split("[")[0].lower(): version for name, version in found}


def test_the_sdk_is_a_development_dependency_only() -> None:
    # Given the runtime, development and benchmark requirements, and the function's source
    runtime, dev = pins(ROOT / "src" / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    imports = [
        path.name
        for path in (ROOT / "src").rglob("*.py")
        if re.search(r"^\s*(import|from)\s+portkey_ai\b", path.read_text(), flags=re.MULTILINE)
    ]

    # Then the SDK is pinned for development as for the benchmark, never shipped, never imported
    assert dev["portkey-ai"] == pins(ROOT / "bench" / "requirements.txt")["portkey-ai"]
    assert "portkey-ai" not in runtime
    assert imports == []


# What each target's request carries besides the body: its path and its OpenAI-Beta header (None: absent).
TARGETS = {
    "conversation": ("/v1/conversations/conversation_parity", None),
    "thread": ("/v1/threads/thread_parity", "assistants=v2"),
}


# The SDK's beta.threads warns that the Assistants API is deprecated: threads are what is compared here.
@pytest.mark.filterwarnings("ignore:The Assistants API is deprecated:DeprecationWarning")
@pytest.mark.parametrize("kind", TARGETS)
@pytest.mark.parametrize("mode", SDK_ROUTING)
def test_an_update_is_on_the_wire_what_the_sdk_sends(
    mode: str, kind: str, invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn
) -> None:
    # Given a secret in this routing mode, and a Portkey client configured the same way
    target_id = f"{kind}_parity"
    aws.put_secret({"api_key": API_KEY, **MODES[mode][0]})
    event = sqs_event([{f"{kind}_id": target_id, "metadata": METADATA}])
    client = Portkey(
        api_key=API_KEY, base_url=portkey.url, trace_id=event["Records"][0]["messageId"], **SDK_ROUTING[mode]
    )

    # When one update goes through the function, and the same one through conversations.update
    # (beta.threads.update for a thread) with the same trace id
    assert invoke(event) == {"batchItemFailures": []}
    if kind == "conversation":
        client.conversations.update(target_id, metadata=METADATA)
    else:
        client.beta.threads.update(target_id, metadata=METADATA)

    # Then the stand-in received the same request twice: method, path, body {"metadata": ...}, the
    # routing headers and Authorization (or none) alike
    ours, sdk = portkey.requests
    assert (ours.status, sdk.status) == (200, 200)
    assert compared(ours) == compared(sdk)
    path, beta = TARGETS[kind]
    assert (ours.method, ours.path, ours.json) == ("POST", path, {"metadata": METADATA})
    assert ours.headers["x-portkey-api-key"] == API_KEY
    assert {name: value for name, value in ours.headers.items() if name in MODES[mode][1]} == MODES[mode][1]
    # and OpenAI-Beta only on a thread's: never on a conversation's, from either client
    assert ours.headers.get("openai-beta") == sdk.headers.get("openai-beta") == beta
