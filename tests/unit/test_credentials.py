"""Secret → headers for every routing mode, and the errors that must not echo a value."""

from __future__ import annotations

from typing import Any

import pytest

from thread_updater.credentials import RoutingMode, credentials_from_secret
from thread_updater.errors import ConfigurationError

KEY = "pk-secret-api-key"


@pytest.mark.parametrize(
    ("secret", "mode", "headers"),
    [
        (
            {"api_key": KEY, "virtual_key": "vk-1"},
            RoutingMode.VIRTUAL_KEY,
            {"x-portkey-api-key": KEY, "x-portkey-virtual-key": "vk-1"},
        ),
        (
            {"api_key": KEY, "provider": "azure-openai", "provider_auth": "sk-az"},
            RoutingMode.PROVIDER_AUTH,
            {"x-portkey-api-key": KEY, "x-portkey-provider": "azure-openai", "Authorization": "Bearer sk-az"},
        ),
        (
            {"api_key": KEY, "config": "pc-abc"},
            RoutingMode.CONFIG,
            {"x-portkey-api-key": KEY, "x-portkey-config": "pc-abc"},
        ),
        (
            {"api_key": KEY, "config": {"provider": "openai", "api_key": "sk-x", "retry": {"attempts": 2}}},
            RoutingMode.CONFIG,
            {
                "x-portkey-api-key": KEY,
                "x-portkey-config": '{"provider":"openai","api_key":"sk-x","retry":{"attempts":2}}',
            },
        ),
        (
            {"api_key": KEY, "provider": "openai", "provider_auth": "sk-h", "custom_host": "http://h:1/v1"},
            RoutingMode.CUSTOM_HOST,
            {
                "x-portkey-api-key": KEY,
                "x-portkey-provider": "openai",
                "Authorization": "Bearer sk-h",
                "x-portkey-custom-host": "http://h:1/v1",
            },
        ),
        (
            {"api_key": KEY, "provider": "@azure-prod"},
            RoutingMode.CATALOG_PROVIDER,
            {"x-portkey-api-key": KEY, "x-portkey-provider": "@azure-prod"},
        ),
        (
            {"api_key": KEY, "virtual_key": "vk-1", "note": "rotated 2026-11", "provider": None},
            RoutingMode.VIRTUAL_KEY,
            {"x-portkey-api-key": KEY, "x-portkey-virtual-key": "vk-1"},
        ),
    ],
    ids=[
        "virtual-key",
        "provider-auth",
        "config-id",
        "config-object",
        "custom-host",
        "catalog",
        "extra-keys",
    ],
)
def test_each_routing_mode_maps_to_the_specs_headers(
    secret: dict[str, Any], mode: RoutingMode, headers: dict[str, str]
) -> None:
    credentials = credentials_from_secret(secret)
    assert credentials.mode is mode
    assert dict(credentials.headers) == headers


def test_repr_never_shows_header_values() -> None:
    credentials = credentials_from_secret({"api_key": KEY, "virtual_key": "vk-hidden"})
    assert KEY not in repr(credentials)
    assert "vk-hidden" not in repr(credentials)


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ({"api_key": KEY}, "no routing mode"),
        ({"virtual_key": "vk-1"}, "'api_key' is missing"),
        ({"api_key": KEY, "virtual_key": "vk-1", "config": "pc-1"}, "mix"),
        ({"api_key": KEY, "provider": "openai"}, "needs 'provider_auth'"),
        ({"api_key": KEY, "provider_auth": "sk-1"}, "mix"),
        ({"api_key": KEY, "custom_host": "http://h", "virtual_key": "vk-1"}, "mix"),
        ({"api_key": KEY, "provider": "@slug", "provider_auth": "sk-1", "virtual_key": "v"}, "mix"),
        ({"api_key": "", "virtual_key": "vk-1"}, "'api_key' must be a non-empty string"),
        ({"api_key": 42, "virtual_key": "vk-1"}, "'api_key' must be a non-empty string"),
        ({"api_key": KEY, "virtual_key": "vk\r\nX-Evil: 1"}, "'virtual_key' must be printable ASCII"),
        ({"api_key": "pk-curly\u2019quote", "virtual_key": "vk-1"}, "'api_key' must be printable ASCII"),
        ({"api_key": KEY, "config": {}}, "'config' object is empty"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_invalid_secrets_are_configuration_errors_without_values(secret: Any, problem: str) -> None:
    with pytest.raises(ConfigurationError, match=problem) as caught:
        credentials_from_secret(secret)
    for value in (KEY, "vk-1", "sk-1", "pc-1", "vk\r\nX-Evil: 1", "pk-curly\u2019quote", "\u2019"):
        assert value not in str(caught.value)
