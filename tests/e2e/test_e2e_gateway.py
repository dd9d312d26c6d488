"""End to end through the real open-source Portkey gateway (Node, pinned in tools/gateway).

The real handler calls the gateway on loopback; the gateway routes to the Portkey stand-in as a
custom host. What the gateway 1.15.2 (with its patch, tools/gateway/README.md) does on this path, and
what these tests pin down:

* it strips every ``x-portkey-*`` header (the Portkey API key never reaches the provider) and
  forwards ``Authorization``, ``OpenAI-Beta``, the path under ``/v1`` and the JSON body;
* it does not retry by itself unless a config asks for ``retry`` (none here): error statuses,
  their bodies and ``Retry-After`` pass through, so the retries seen upstream are the handler's;
* with an inline ``azure-openai`` config it calls ``{custom_host}/threads/{id}?api-version=…``
  (``custom_host`` standing for ``https://{resource_name}.openai.azure.com/openai``) with the
  config's key as ``api-key``, and nothing else of the caller's credentials;
* conversations (``POST /v1/conversations/{id}``) go through its generic proxy like threads, to
  ``{custom_host}/conversations/{id}``, and with ``"api_version": "v1"`` to Azure's v1 path
  ``{custom_host}/v1/conversations/{id}`` with no ``api-version`` query;
* it has no Model Catalog: an ``@slug`` provider is refused with 400 before anything is sent.

Needs ``npm ci --prefix tools/gateway``. Without node or the package the tests fail in CI (``CI``
set) and are skipped elsewhere.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest
from mypy_boto3_sqs import SQSClient

from devstack.azure_openai_standin import AzureOpenAIStandIn
from devstack.gateway import GatewayUnavailable, PortkeyGateway
from devstack.lambda_events import sqs_event
from devstack.local_aws import create_resources, function_environment
from devstack.poller import SqsPoller
from devstack.portkey_standin import PortkeyStandIn, RecordedRequest, Reply
from tests.conftest import API_KEY, PROVIDER_AUTH, AwsResources, FunctionLogs, Invoker, failed_ids, in_ci

# One worker runs the module under xdist (`make pytest`): one gateway (node), one build/e2e-gateway.log.
pytestmark = [pytest.mark.e2e, pytest.mark.xdist_group("e2e-gateway")]

GATEWAY_LOG = Path(__file__).resolve().parents[2] / "build" / "e2e-gateway.log"


@pytest.fixture(scope="module")
def gateway() -> Iterator[PortkeyGateway]:
    """One gateway for the module, stopped at its end (its output: build/e2e-gateway.log)."""
    server = PortkeyGateway(log_path=GATEWAY_LOG)
    try:
        server.start()
    except GatewayUnavailable as error:
        if in_ci():
            pytest.fail(f"the Portkey gateway is required in CI: {error}", pytrace=False)
        pytest.skip(str(error))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def portkey() -> Iterator[PortkeyStandIn]:
    """The upstream as the gateway reaches it: no Portkey API key, only the provider's Bearer token."""
    with PortkeyStandIn(api_keys=None, auth_tokens={PROVIDER_AUTH}) as server:
        yield server


@pytest.fixture
def function_env(
    function_env: dict[str, str], gateway: PortkeyGateway, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """The shared environment, with the function pointed at the gateway instead of the stand-in."""
    monkeypatch.setenv("PORTKEY_BASE_URL", gateway.url)
    return {**function_env, "PORTKEY_BASE_URL": gateway.url}


def custom_host_secret(portkey: PortkeyStandIn) -> dict[str, Any]:
    return {
        "api_key": API_KEY,
        "provider": "openai",
        "provider_auth": PROVIDER_AUTH,
        "custom_host": portkey.url,
    }


def wire_body(update: dict[str, Any]) -> bytes:
    """The update's fields as the handler serialises them."""
    return json.dumps(update, separators=(",", ":"), ensure_ascii=False).encode()


def assert_forwarded(request: RecordedRequest, thread_id: str, update: dict[str, Any]) -> None:
    """What the provider saw: the thread path, the provider token, the beta header, the exact body."""
    assert request.path == f"/v1/threads/{thread_id}"
    assert request.headers["openai-beta"] == "assistants=v2"
    assert_proxied(request, update)


def assert_conversation_forwarded(
    request: RecordedRequest, conversation_id: str, update: dict[str, Any]
) -> None:
    """What the provider saw: the conversation path, the provider token, no beta header, the exact body."""
    assert request.path == f"/v1/conversations/{conversation_id}"
    assert "openai-beta" not in request.headers
    assert_proxied(request, update)


def assert_proxied(request: RecordedRequest, update: dict[str, Any]) -> None:
    """A POST with the provider token, JSON, no x-portkey-* header and no Portkey key, the exact body."""
    assert request.method == "POST"
    assert request.headers["authorization"] == f"Bearer {PROVIDER_AUTH}"
    assert request.headers["content-type"] == "application/json"
    assert [name for name in request.headers if name.startswith("x-portkey-")] == []
    assert API_KEY not in json.dumps(request.headers)
    assert request.body == wire_body(update)
    assert request.json == update


def test_update_is_applied_through_the_gateway_with_provider_auth_and_custom_host(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the secret routes by provider + provider_auth + custom_host (the stand-in) via the gateway
    aws.put_secret(custom_host_secret(portkey))
    update = {"metadata": {"user": "abc", "stage": "e2e"}, "tool_resources": None}
    event = sqs_event([{"thread_id": "thread_gw_custom", **update}])

    # When the handler processes the batch
    response = invoke(event)

    # Then the gateway forwarded one POST with the provider token and exactly the update's fields,
    # and the stored thread holds the update
    assert response == {"batchItemFailures": []}
    [request] = portkey.requests
    assert request.status == 200
    assert_forwarded(request, "thread_gw_custom", update)
    stored = portkey.thread("thread_gw_custom")
    assert stored is not None
    assert {name: stored[name] for name in update} == update
    assert aws.dead_letters() == []


def test_update_is_applied_through_the_gateway_with_an_inline_config(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the secret routes by an inline x-portkey-config object (gateway schema: snake_case)
    config = {"provider": "openai", "api_key": PROVIDER_AUTH, "custom_host": portkey.url}
    aws.put_secret({"api_key": API_KEY, "config": config})
    update = {"tool_resources": {"code_interpreter": {"file_ids": ["file_1", "file_2"]}}}
    event = sqs_event([{"thread_id": "thread_gw_config", **update}])

    # When the handler processes the batch
    response = invoke(event)

    # Then the config's api_key reached the provider as its Bearer token, with the exact body
    assert response == {"batchItemFailures": []}
    [request] = portkey.requests
    assert request.status == 200
    assert_forwarded(request, "thread_gw_config", update)
    stored = portkey.thread("thread_gw_config")
    assert stored is not None
    assert stored["tool_resources"] == update["tool_resources"]
    assert aws.dead_letters() == []


def test_upstream_404_passes_through_and_is_dead_lettered_as_rejected(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the provider answers 404 for this thread
    aws.put_secret(custom_host_secret(portkey))
    message = "No thread found with id 'thread_gw_gone'."
    portkey.always(
        "thread_gw_gone",
        Reply(status=404, body={"error": {"message": message, "type": "invalid_request_error"}}),
    )
    event = sqs_event([{"thread_id": "thread_gw_gone", "metadata": {"a": "b"}}])

    # When the update is processed
    response = invoke(event)

    # Then the gateway passed the 404 and its message through: one attempt, dead-lettered as rejected
    assert response == {"batchItemFailures": []}
    assert len(portkey.requests) == 1
    [letter] = aws.dead_letters()
    assert letter["category"] == "rejected"
    assert letter["status"] == 404
    assert message in letter["error"]
    assert letter["attempts"] == 1
    assert letter["payload"] == event["Records"][0]["body"]
    assert letter["_attributes"] == {"category": "rejected", "status": "404"}


def test_upstream_429_with_retry_after_is_retried_by_the_handler_and_applied(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway, logs: FunctionLogs
) -> None:
    # Given the provider answers 429 with Retry-After: 1 once, then normally
    aws.put_secret(custom_host_secret(portkey))
    portkey.script("thread_gw_busy", Reply(status=429, headers={"Retry-After": "1"}))
    event = sqs_event([{"thread_id": "thread_gw_busy", "metadata": {"v": "1"}}])
    message_id = event["Records"][0]["messageId"]

    # When the update is processed
    response = invoke(event)

    # Then upstream saw the 429 and then a 200, about a second apart: the gateway passed the 429
    # and its Retry-After through without retrying, and the handler waited and made its 2nd attempt
    assert response == {"batchItemFailures": []}
    first, second = portkey.requests
    assert (first.status, second.status) == (429, 200)
    assert second.arrived_at - first.arrived_at >= 0.9
    [success] = [line for line in logs.lines() if line.get("message") == "update success"]
    assert success["message_id"] == message_id
    assert success["attempts"] == 2
    assert success["portkey_trace_id"] == message_id  # the gateway echoes the request's trace id
    stored = portkey.thread("thread_gw_busy")
    assert stored is not None
    assert stored["metadata"] == {"v": "1"}
    assert aws.dead_letters() == []


def test_5xx_storm_is_handed_back_after_the_handlers_attempts(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the provider answers 503 to every request for one thread
    aws.put_secret(custom_host_secret(portkey))
    portkey.always("thread_gw_storm", Reply(status=503))
    event = sqs_event([{"thread_id": "thread_gw_storm", "metadata": {}}])

    # When the batch is processed
    response = invoke(event)

    # Then the record goes back to SQS after MAX_ATTEMPTS (3) upstream calls, one per handler
    # attempt (the gateway adds none), and nothing is dead-lettered by the function
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert [request.status for request in portkey.requests] == [503, 503, 503]
    assert aws.dead_letters() == []


def test_5xx_storm_ends_in_the_dlq_through_the_queues_redrive_policy(
    moto_endpoint: str, portkey: PortkeyStandIn, gateway: PortkeyGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a source queue that redrives to its DLQ after 2 receives, and a provider that always 503s
    resources = create_resources(
        moto_endpoint, custom_host_secret(portkey), max_receive_count=2, visibility_timeout_s=1
    )
    for name, value in function_environment(resources, gateway.url).items():
        monkeypatch.setenv(name, value)
    portkey.always("thread_gw_storm", Reply(status=503))
    body = json.dumps({"thread_id": "thread_gw_storm", "metadata": {"k": "v"}})
    sqs: SQSClient = boto3.client("sqs")
    message_id = sqs.send_message(QueueUrl=resources.queue_url, MessageBody=body)["MessageId"]

    # When the event source mapping stand-in drains the queue through the real handler
    from handler import lambda_handler

    poller = SqsPoller(resources.queue_url, lambda_handler, window_s=0.2, function_timeout_s=30)
    stats = poller.drain(max_seconds=60)

    # Then each of the 2 receives made 3 attempts, then SQS moved the raw original body to the DLQ
    assert stats.handler_errors == []
    assert stats.receives_by_message == {message_id: 2}
    assert stats.deleted == 0
    assert len(portkey.requests_for("thread_gw_storm")) == 6
    dead = sqs.receive_message(QueueUrl=resources.dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=60)
    [moved] = dead.get("Messages", [])
    assert moved["MessageId"] == message_id
    assert moved["Body"] == body
    assert poller.in_queue() == 0


# --------------------------------------------------------------------------- conversations


def test_a_thread_and_a_conversation_update_in_one_batch_are_both_applied_through_the_gateway(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the secret routes by provider + provider_auth + custom_host, and one batch holds a thread
    # update and a conversation update
    aws.put_secret(custom_host_secret(portkey))
    thread_update = {"metadata": {"stage": "thread"}, "tool_resources": None}
    conversation_update = {"metadata": {"stage": "conversation", "user": "abc"}}
    event = sqs_event(
        [
            {"thread_id": "thread_gw_both", **thread_update},
            {"conversation_id": "conv_gw_both", **conversation_update},
        ]
    )

    # When the handler processes the batch
    response = invoke(event)

    # Then the gateway forwarded each to its own endpoint (the beta header only on the thread's), with
    # exactly its fields, and both are stored
    assert response == {"batchItemFailures": []}
    [thread_call] = portkey.requests_for("thread_gw_both")
    [conversation_call] = portkey.requests_for("conv_gw_both")
    assert (thread_call.status, conversation_call.status) == (200, 200)
    assert_forwarded(thread_call, "thread_gw_both", thread_update)
    assert_conversation_forwarded(conversation_call, "conv_gw_both", conversation_update)
    stored = portkey.conversation("conv_gw_both")
    assert stored is not None
    assert (stored["object"], stored["metadata"]) == ("conversation", conversation_update["metadata"])
    thread = portkey.thread("thread_gw_both")
    assert thread is not None
    assert thread["metadata"] == thread_update["metadata"]
    assert aws.dead_letters() == []


def test_conversation_update_is_applied_through_the_gateway_with_an_inline_config(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the secret routes by an inline x-portkey-config object
    config = {"provider": "openai", "api_key": PROVIDER_AUTH, "custom_host": portkey.url}
    aws.put_secret({"api_key": API_KEY, "config": config})
    update = {"metadata": {"plan": "pro"}}
    event = sqs_event([{"conversation_id": "conv_gw_config", **update}])

    # When the handler processes the batch
    response = invoke(event)

    # Then the config's api_key reached the provider as its Bearer token on the conversation path
    assert response == {"batchItemFailures": []}
    [request] = portkey.requests
    assert request.status == 200
    assert_conversation_forwarded(request, "conv_gw_config", update)
    stored = portkey.conversation("conv_gw_config")
    assert stored is not None
    assert stored["metadata"] == update["metadata"]


def test_conversation_404_passes_through_and_is_dead_lettered_as_rejected_naming_the_conversation(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the provider has no such conversation (unknown ones are not created)
    aws.put_secret(custom_host_secret(portkey))
    portkey.auto_create = False
    event = sqs_event([{"conversation_id": "conv_gw_gone", "metadata": {"a": "b"}}])

    # When the update is processed
    response = invoke(event)

    # Then the provider's 404 and its words came back through the gateway: one attempt, a letter
    # that names the conversation (and no thread) with the original body for a replay
    assert response == {"batchItemFailures": []}
    [request] = portkey.requests
    assert (request.status, request.path) == (404, "/v1/conversations/conv_gw_gone")
    [letter] = aws.dead_letters()
    assert (letter["category"], letter["status"], letter["attempts"]) == ("rejected", 404, 1)
    assert "Conversation with id 'conv_gw_gone' not found." in letter["error"]
    assert letter["conversation_id"] == "conv_gw_gone"
    assert letter["thread_id"] is None
    assert letter["payload"] == event["Records"][0]["body"]


def test_a_model_catalog_provider_is_refused_by_the_open_source_gateway_before_any_call(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the secret routes by a Model Catalog slug (x-portkey-provider: @slug, no provider auth),
    # which hosted Portkey resolves and the open-source gateway has no catalog for
    aws.put_secret({"api_key": API_KEY, "provider": "@openai-prod"})
    event = sqs_event([{"conversation_id": "conv_gw_catalog", "metadata": {"k": "v"}}])

    # When the update is processed
    response = invoke(event)

    # Then the gateway answered 400 "Invalid provider passed" itself (nothing reached the provider),
    # and the update is dead-lettered as rejected with those words and its body for a replay
    assert response == {"batchItemFailures": []}
    assert portkey.requests == []
    [letter] = aws.dead_letters()
    assert (letter["category"], letter["status"], letter["attempts"]) == ("rejected", 400, 1)
    assert "Invalid provider passed" in letter["error"]
    assert letter["conversation_id"] == "conv_gw_catalog"
    assert letter["payload"] == event["Records"][0]["body"]


# --------------------------------------------------------------------------- Azure OpenAI, inline config

AZURE_RESOURCE = "contoso-assistants"
AZURE_API_VERSION = "2024-05-01-preview"


@pytest.fixture
def azure() -> Iterator[AzureOpenAIStandIn]:
    """Azure OpenAI as the gateway reaches it: threads under /openai, api-version, api-key."""
    with AzureOpenAIStandIn(api_keys={PROVIDER_AUTH}, api_versions={AZURE_API_VERSION}) as server:
        yield server


def azure_secret(azure: AzureOpenAIStandIn) -> dict[str, Any]:
    """The documented Azure secret, with custom_host standing in for {resource}.openai.azure.com/openai."""
    config = {
        "provider": "azure-openai",
        "resource_name": AZURE_RESOURCE,
        "api_version": AZURE_API_VERSION,
        "api_key": PROVIDER_AUTH,
        "custom_host": azure.url,
    }
    return {"api_key": API_KEY, "config": config}


def assert_azure_call(request: RecordedRequest, thread_id: str, update: dict[str, Any]) -> None:
    """What Azure saw: its thread path and api-version, the Azure key as api-key, the exact body."""
    url = urlsplit(request.path)
    assert url.path == f"/openai/threads/{thread_id}"
    assert parse_qs(url.query) == {"api-version": [AZURE_API_VERSION]}
    assert_azure_proxied(request, update)


def assert_azure_proxied(request: RecordedRequest, update: dict[str, Any]) -> None:
    """A POST with the Azure key as api-key and nothing of the caller's credentials, the exact body."""
    assert request.method == "POST"
    assert request.headers["api-key"] == PROVIDER_AUTH
    assert "authorization" not in request.headers
    assert request.headers["content-type"] == "application/json"
    assert [name for name in request.headers if name.startswith("x-portkey-")] == []
    assert API_KEY not in json.dumps(request.headers)
    assert request.body == wire_body(update)


def test_azure_openai_inline_config_reaches_the_azure_thread_endpoint(
    invoke: Invoker, azure: AzureOpenAIStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the secret routes by an inline azure-openai config through the gateway
    aws.put_secret(azure_secret(azure))
    update = {
        "metadata": {"stage": "azure"},
        "tool_resources": {"file_search": {"vector_store_ids": ["vs_1"]}},
    }
    event = sqs_event([{"thread_id": "thread_az_ok", **update}])

    # When the handler processes the batch
    response = invoke(event)

    # Then Azure got one call in its own shape, and the thread holds the update
    assert response == {"batchItemFailures": []}
    [request] = azure.requests
    assert request.status == 200
    assert_azure_call(request, "thread_az_ok", update)
    stored = azure.thread("thread_az_ok")
    assert stored is not None
    assert {name: stored[name] for name in update} == update
    assert aws.dead_letters() == []


def test_azure_404_is_dead_lettered_as_rejected(
    invoke: Invoker, azure: AzureOpenAIStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given Azure has no such thread
    aws.put_secret(azure_secret(azure))
    message = "No thread found with id 'thread_az_gone'."
    azure.always(
        "thread_az_gone",
        Reply(status=404, body={"error": {"message": message, "type": "invalid_request_error"}}),
    )
    update = {"metadata": {"a": "b"}}
    event = sqs_event([{"thread_id": "thread_az_gone", **update}])

    # When the update is processed
    response = invoke(event)

    # Then one call was made, and the update is in the DLQ as rejected with Azure's 404 and message
    assert response == {"batchItemFailures": []}
    [request] = azure.requests
    assert_azure_call(request, "thread_az_gone", update)
    [letter] = aws.dead_letters()
    assert (letter["category"], letter["status"], letter["attempts"]) == ("rejected", 404, 1)
    assert message in letter["error"]
    assert letter["payload"] == event["Records"][0]["body"]


def test_azure_429_with_retry_after_is_retried_and_applied(
    invoke: Invoker, azure: AzureOpenAIStandIn, aws: AwsResources, gateway: PortkeyGateway, logs: FunctionLogs
) -> None:
    # Given Azure answers 429 with Retry-After: 1 once, then normally
    aws.put_secret(azure_secret(azure))
    azure.script("thread_az_busy", Reply(status=429, headers={"Retry-After": "1"}))
    update = {"metadata": {"v": "2"}}
    event = sqs_event([{"thread_id": "thread_az_busy", **update}])

    # When the update is processed
    response = invoke(event)

    # Then the gateway passed the 429 through, the handler waited and its second attempt was applied
    assert response == {"batchItemFailures": []}
    first, second = azure.requests
    assert (first.status, second.status) == (429, 200)
    for request in (first, second):
        assert_azure_call(request, "thread_az_busy", update)
    [success] = [line for line in logs.lines() if line.get("message") == "update success"]
    assert success["attempts"] == 2
    stored = azure.thread("thread_az_busy")
    assert stored is not None
    assert stored["metadata"] == {"v": "2"}
    assert aws.dead_letters() == []


def test_a_wrong_azure_key_is_a_configuration_error_not_a_rejection(
    invoke: Invoker, azure: AzureOpenAIStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the config carries a key Azure does not accept
    secret = azure_secret(azure)
    secret["config"]["api_key"] = "not-the-azure-key"
    aws.put_secret(secret)
    event = sqs_event([{"thread_id": "thread_az_key", "metadata": {}}])

    # When the update is processed
    response = invoke(event)

    # Then Azure's 401 came back through the gateway and the record is handed back to SQS (retried
    # until the secret is fixed, or moved to the DLQ by the redrive policy), never dead-lettered here
    assert failed_ids(response) == {event["Records"][0]["messageId"]}
    assert {request.status for request in azure.requests} == {401}
    assert azure.thread("thread_az_key") is None
    assert aws.dead_letters() == []


# --------------------------------------------------------------------------- Azure OpenAI v1, conversations


def azure_v1_secret(azure: AzureOpenAIStandIn) -> dict[str, Any]:
    """Azure's v1 API: ``api_version`` "v1", no dated version (the gateway builds v1 paths from 1.15.0)."""
    secret = azure_secret(azure)
    secret["config"]["api_version"] = "v1"
    return secret


def assert_azure_conversation_call(
    request: RecordedRequest, conversation_id: str, update: dict[str, Any]
) -> None:
    """What Azure saw: the v1 conversation path, no api-version, no beta header, as any Azure call."""
    url = urlsplit(request.path)
    assert (url.path, url.query) == (f"/openai/v1/conversations/{conversation_id}", "")
    assert "openai-beta" not in request.headers
    assert_azure_proxied(request, update)


def test_azure_openai_v1_config_reaches_the_azure_conversation_endpoint(
    invoke: Invoker, azure: AzureOpenAIStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given the secret routes by an inline azure-openai config for Azure's v1 API
    aws.put_secret(azure_v1_secret(azure))
    update = {"metadata": {"stage": "azure-v1"}}
    event = sqs_event([{"conversation_id": "conv_az_ok", **update}])

    # When the handler processes the batch
    response = invoke(event)

    # Then Azure got one call on /openai/v1/conversations/{id}, and the conversation holds the update
    assert response == {"batchItemFailures": []}
    [request] = azure.requests
    assert request.status == 200
    assert_azure_conversation_call(request, "conv_az_ok", update)
    stored = azure.conversation("conv_az_ok")
    assert stored is not None
    assert stored["metadata"] == update["metadata"]
    assert aws.dead_letters() == []


def test_azure_conversation_404_is_dead_lettered_as_rejected(
    invoke: Invoker, azure: AzureOpenAIStandIn, aws: AwsResources, gateway: PortkeyGateway
) -> None:
    # Given Azure has no such conversation
    aws.put_secret(azure_v1_secret(azure))
    azure.auto_create = False
    update = {"metadata": {"a": "b"}}
    event = sqs_event([{"conversation_id": "conv_az_gone", **update}])

    # When the update is processed
    response = invoke(event)

    # Then one call was made, and the letter names the conversation with Azure's 404 and its words
    assert response == {"batchItemFailures": []}
    [request] = azure.requests
    assert_azure_conversation_call(request, "conv_az_gone", update)
    [letter] = aws.dead_letters()
    assert (letter["category"], letter["status"], letter["attempts"]) == ("rejected", 404, 1)
    assert "Conversation with id 'conv_az_gone' not found." in letter["error"]
    assert letter["conversation_id"] == "conv_az_gone"
