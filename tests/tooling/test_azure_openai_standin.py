"""The stand-in in Azure OpenAI's shape (devstack/azure_openai_standin.py), called directly."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from devstack.azure_openai_standin import AzureOpenAIStandIn
from tests.tooling.test_portkey_standin import Answer, call

AZURE_KEY = "azure-key-1"
API_VERSION = "2024-05-01-preview"
JSON = {"content-type": "application/json"}
UPDATE = json.dumps({"metadata": {"stage": "azure"}}).encode()


@pytest.fixture
def azure() -> Iterator[AzureOpenAIStandIn]:
    with AzureOpenAIStandIn(api_keys={AZURE_KEY}, api_versions={API_VERSION}) as server:
        yield server


def post_thread(azure: AzureOpenAIStandIn, query: str, headers: dict[str, str]) -> Answer:
    return call(azure, "POST", f"/openai/threads/thread_az{query}", UPDATE, {**JSON, **headers})


def test_threads_live_under_openai_with_an_api_version_and_an_api_key(azure: AzureOpenAIStandIn) -> None:
    # Given the custom host a gateway is pointed at
    assert azure.url == f"http://127.0.0.1:{azure.port}/openai"

    # When a modify-thread call arrives in Azure's shape (no OpenAI-Beta header needed)
    answer = post_thread(azure, f"?api-version={API_VERSION}", {"api-key": AZURE_KEY})

    # Then it is applied and recorded with its query string
    assert answer.status == 200, answer.body
    assert answer.json["metadata"] == {"stage": "azure"}
    [request] = azure.requests
    assert (request.path, request.thread_id) == (
        f"/openai/threads/thread_az?api-version={API_VERSION}",
        "thread_az",
    )
    assert request.headers["api-key"] == AZURE_KEY


@pytest.mark.parametrize(
    ("query", "headers", "status", "code"),
    [
        pytest.param("", {"api-key": AZURE_KEY}, 400, "MissingApiVersionParameter", id="no-api-version"),
        pytest.param("?api-version=", {"api-key": AZURE_KEY}, 400, "MissingApiVersionParameter", id="empty"),
        pytest.param(
            "?api-version=2020-01-01", {"api-key": AZURE_KEY}, 400, "UnsupportedApiVersion", id="old"
        ),
        pytest.param(f"?api-version={API_VERSION}", {"api-key": "wrong"}, 401, "401", id="wrong-key"),
        pytest.param(
            f"?api-version={API_VERSION}", {"authorization": f"Bearer {AZURE_KEY}"}, 401, "401", id="bearer"
        ),
    ],
)
def test_calls_azure_would_refuse_are_refused_and_change_nothing(
    azure: AzureOpenAIStandIn, query: str, headers: dict[str, str], status: int, code: str
) -> None:
    answer = post_thread(azure, query, headers)
    assert answer.status == status
    assert answer.json["error"]["code"] == code
    assert azure.thread("thread_az") is None


def test_the_openai_path_is_not_served(azure: AzureOpenAIStandIn) -> None:
    answer = call(
        azure, "POST", f"/v1/threads/thread_az?api-version={API_VERSION}", UPDATE, {"api-key": AZURE_KEY}
    )
    assert answer.status == 404
    assert azure.thread("thread_az") is None
