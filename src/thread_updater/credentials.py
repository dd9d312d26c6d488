"""Portkey credentials: the secret's routing modes, mapped to request headers, and their cache.

Validation is hand-written rather than a pydantic model on purpose: pydantic's error text
echoes the offending input, and here the input is a credential.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from thread_updater.aws import bounded_config
from thread_updater.errors import ConfigurationError

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

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
    return PortkeyCredentials(mode=mode, headers=headers)


class CredentialSource(Protocol):
    """What the Portkey client needs of credentials: the current ones, and a refresh after a 401/403.

    ``CredentialStore`` (Secrets Manager) is the one the function uses; the seam lets the client be
    tested without AWS.
    """

    def current(self) -> tuple[int, PortkeyCredentials]: ...

    def refresh(self, seen_generation: int) -> tuple[int, PortkeyCredentials]: ...


class CredentialStore:
    """Credentials from Secrets Manager through Powertools' cache, refreshed at most once per version.

    ``generation`` numbers what was handed out, so when several concurrent requests see a 401
    for the same credentials only the first forces a new fetch (key rotation); the others reuse it.
    """

    def __init__(self, secret_id: str, max_age_s: int) -> None:
        self._secret_id = secret_id
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._provider: SecretsProvider | None = None
        self._generation = 0
        self._current: PortkeyCredentials | None = None

    def _fetch(self, *, force: bool) -> PortkeyCredentials:
        # Imported here: Powertools' parameters module pulls in boto3, which a cold start
        # should only pay for once it really needs the secret.
        from aws_lambda_powertools.utilities.parameters import SecretsProvider
        from aws_lambda_powertools.utilities.parameters.exceptions import (
            GetParameterError,
            TransformParameterError,
        )

        if self._provider is None:
            self._provider = SecretsProvider(boto_config=bounded_config())
        try:
            secret = self._provider.get(
                self._secret_id, transform="json", max_age=self._max_age_s, force_fetch=force
            )
        except TransformParameterError:
            raise ConfigurationError("Portkey secret: value is not valid JSON") from None
        except GetParameterError as error:
            raise ConfigurationError(
                f"Portkey secret {self._secret_id!r} could not be read: {error}"
            ) from None
        return credentials_from_secret(secret)

    def current(self) -> tuple[int, PortkeyCredentials]:
        """The cached credentials (fetched again once the cache age is exceeded) and their generation."""
        with self._lock:
            credentials = self._fetch(force=False)
            if credentials != self._current:
                self._current = credentials
                self._generation += 1
            return self._generation, credentials

    def refresh(self, seen_generation: int) -> tuple[int, PortkeyCredentials]:
        """Fetch the secret again unless another request already did since ``seen_generation``."""
        with self._lock:
            if self._current is None or self._generation == seen_generation:
                self._current = self._fetch(force=True)
                self._generation += 1
            return self._generation, self._current
