"""Portkey credentials: the secret's routing modes, mapped to request headers (cached by secret_store).

Validation is hand-written rather than a pydantic model on purpose: pydantic's error text
echoes the offending input, and here the input is a credential.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from thread_updater.deadline import Deadline
from thread_updater.errors import ConfigurationError

ROUTING_KEYS = ("virtual_key", "provider", "provider_auth", "config", "custom_host")


class RoutingMode(StrEnum):
    VIRTUAL_KEY = "virtual_key"
    PROVIDER_AUTH = "provider_auth"
    CONFIG = "config"
    CUSTOM_HOST = "custom_host"
    CATALOG_PROVIDER = "catalog_provider"


@dataclass(frozen=True)
class PortkeyCredentials:
    """The auth headers for one secret version. ``repr`` shows the mode only, never a value."""

    mode: RoutingMode
    headers: Mapping[str, str] = field(repr=False)
    # Every string in the secret and every header value: what redaction must remove from upstream text.
    secret_values: tuple[str, ...] = field(default=(), repr=False, compare=False)


def _text(secret: Mapping[str, Any], key: str) -> str:
    value = secret[key]
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"Portkey secret: {key!r} must be a non-empty string")
    if not (value.isascii() and value.isprintable()):  # header values: no CR/LF injection, no non-ASCII
        raise ConfigurationError(f"Portkey secret: {key!r} must be printable ASCII")
    return value


def _config_header(secret: Mapping[str, Any]) -> str:
    value = secret["config"]
    if isinstance(value, dict):
        if not value:
            raise ConfigurationError("Portkey secret: 'config' object is empty")
        return json.dumps(value, separators=(",", ":"), ensure_ascii=True)
    return _text(secret, "config")


def _routing_mode(present: frozenset[str], provider: str | None) -> RoutingMode:
    if present == {"virtual_key"}:
        return RoutingMode.VIRTUAL_KEY
    if present == {"config"}:
        return RoutingMode.CONFIG
    if present == {"provider", "provider_auth"}:
        return RoutingMode.PROVIDER_AUTH
    if present == {"provider", "provider_auth", "custom_host"}:
        return RoutingMode.CUSTOM_HOST
    if present == {"provider"} and provider is not None and provider.startswith("@"):
        return RoutingMode.CATALOG_PROVIDER
    if not present:
        raise ConfigurationError(
            "Portkey secret: no routing mode; set one of virtual_key, config, provider+provider_auth "
            "(optionally custom_host), or an @catalog provider"
        )
    if present == {"provider"}:
        raise ConfigurationError(
            "Portkey secret: 'provider' needs 'provider_auth' unless it is an @ Model Catalog slug"
        )
    raise ConfigurationError(
        f"Portkey secret: keys {sorted(present)} mix or do not form a routing mode; set exactly one of "
        "virtual_key | config | provider+provider_auth[+custom_host] | @catalog provider"
    )


def credentials_from_secret(secret: object) -> PortkeyCredentials:
    """Map the secret's JSON to headers, as the spec's security section prescribes."""
    if not isinstance(secret, dict):
        raise ConfigurationError("Portkey secret: must be a JSON object")
    if "api_key" not in secret:
        raise ConfigurationError("Portkey secret: 'api_key' is missing")
    headers = {"x-portkey-api-key": _text(secret, "api_key")}
    present = frozenset(key for key in ROUTING_KEYS if secret.get(key) is not None)
    provider = _text(secret, "provider") if "provider" in present else None
    mode = _routing_mode(present, provider)
    if mode is RoutingMode.VIRTUAL_KEY:
        headers["x-portkey-virtual-key"] = _text(secret, "virtual_key")
    elif mode is RoutingMode.CONFIG:
        headers["x-portkey-config"] = _config_header(secret)
    else:
        headers["x-portkey-provider"] = _text(secret, "provider")
        if mode is not RoutingMode.CATALOG_PROVIDER:
            headers["Authorization"] = f"Bearer {_text(secret, 'provider_auth')}"
        if mode is RoutingMode.CUSTOM_HOST:
            headers["x-portkey-custom-host"] = _text(secret, "custom_host")
    values = (*_strings_in(secret), *headers.values())
    return PortkeyCredentials(mode=mode, headers=headers, secret_values=tuple(dict.fromkeys(values)))


def _strings_in(value: object) -> list[str]:
    """Every string anywhere in a JSON value (a config object nests its provider keys)."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings_in(item)]
    if isinstance(value, list):
        return [text for item in value for text in _strings_in(item)]
    return []


class CredentialSource(Protocol):
    """What the Portkey client needs of credentials: the current ones, and a refresh after a 401/403.

    ``secret_store.CredentialStore`` (Secrets Manager) is the one the function uses; the seam lets the
    client be tested without AWS. ``confirm`` and ``accepted`` tell a 403 for one update from refused
    credentials (classification.py).
    """

    def current(self, deadline: Deadline) -> tuple[int, PortkeyCredentials]: ...

    def refresh(self, seen_generation: int, deadline: Deadline) -> tuple[int, PortkeyCredentials]: ...

    def confirm(self, credentials: PortkeyCredentials) -> None: ...

    def accepted(self, credentials: PortkeyCredentials) -> bool: ...
