"""Configuration read from the environment, validated once per value set."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from thread_updater.errors import ConfigurationError
from thread_updater.observability import logger
from thread_updater.slots import Semantics
from thread_updater.validation import describe_validation_error

__all__ = ["OWN_PREFIXES", "Settings", "known_variables", "load_settings", "unknown_variables"]

DEFAULT_BASE_URL = "https://api.portkey.ai/v1"
DEFAULT_MAX_CONCURRENCY = 16


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Settings(BaseModel):
    """The function's environment. Field aliases are the variable names."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    secret_id: Annotated[str, Field(alias="PORTKEY_SECRET_ID", min_length=1)]
    base_url: Annotated[str, Field(alias="PORTKEY_BASE_URL")] = DEFAULT_BASE_URL
    dlq_url: Annotated[str, Field(alias="DLQ_URL", min_length=1)]
    max_attempts: Annotated[int, Field(alias="MAX_ATTEMPTS", ge=1, le=10)] = 3
    max_concurrency: Annotated[int, Field(alias="MAX_CONCURRENCY", ge=1, le=256)] = DEFAULT_MAX_CONCURRENCY
    # Powertools' own variable for the parameters cache; we default to 5 minutes, not its 5 seconds,
    # because a Secrets Manager call per warm invocation costs latency and money.
    secret_max_age_s: Annotated[int, Field(alias="POWERTOOLS_PARAMETERS_MAX_AGE", ge=0, le=86400)] = 300
    connect_timeout_s: Annotated[float, Field(alias="PORTKEY_CONNECT_TIMEOUT", gt=0, le=60)] = 3.05
    read_timeout_s: Annotated[float, Field(alias="PORTKEY_READ_TIMEOUT", gt=0, le=900)] = 30.0
    # Requests per second per container; unset or 0: no static cap (the adaptive limit still applies).
    max_rps: Annotated[float | None, Field(alias="PORTKEY_MAX_RPS", ge=0, le=10000)] = None

    @field_validator("max_rps")
    @classmethod
    def _zero_is_no_cap(cls, value: float | None) -> float | None:
        """0 is what the template passes when the operator sets no cap."""
        return value or None

    # Ordering across batches and invocations (docs/contract.md#ordering); unset: per-batch lanes only.
    state_table: Annotated[str | None, Field(alias="THREAD_STATE_TABLE")] = None
    state_ttl_days: Annotated[int, Field(alias="THREAD_STATE_TTL_DAYS", ge=1, le=3650)] = 45
    lease_grace_s: Annotated[float, Field(alias="THREAD_LEASE_GRACE_SECONDS", ge=0, le=900)] = 10.0
    heal_delay_s: Annotated[int, Field(alias="LATE_WRITE_HEAL_DELAY_SECONDS", ge=0, le=43_200)] = 120
    # What the upstream does with a metadata map (slots.py, docs/ordering.md): never defaulted silently.
    metadata_semantics: Annotated[Semantics, Field(alias="METADATA_SEMANTICS")] = Semantics.MERGE

    @field_validator("state_table", mode="before")
    @classmethod
    def _unset_when_empty(cls, value: object) -> object:
        """An empty variable (a template parameter left blank) means no table, not a table named ''."""
        return None if value == "" else value

    @field_validator("base_url")
    @classmethod
    def _https_or_loopback(cls, value: str) -> str:
        """Credentials travel in headers: plain HTTP is only acceptable to this machine.

        Checked as urllib3 (which makes the connection) parses the URL too, so that no difference
        between two URL parsers can move the host: userinfo, backslashes, whitespace and control
        characters have no business in a base URL and are refused outright.
        """
        if any(char in "@\\" or ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError("must not contain userinfo, backslashes, whitespace or control characters")
        parts = urlsplit(value)
        try:
            parts.port  # noqa: B018 - raises ValueError for a malformed port
            connects_to = parse_url(value).host
        except (ValueError, LocationParseError):
            raise ValueError("must be an absolute http(s) URL") from None
        if not parts.hostname or parts.scheme not in {"https", "http"}:
            raise ValueError("must be an absolute http(s) URL")
        if (connects_to or "").strip("[]").lower() != parts.hostname:
            raise ValueError("must be an absolute http(s) URL")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        if parts.scheme == "http" and not _is_loopback(parts.hostname):
            raise ValueError("must use https (plain http is allowed for loopback hosts only)")
        return value.rstrip("/")

    @field_validator("dlq_url")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in {"https", "http"} or not parts.hostname:
            raise ValueError("must be an SQS queue URL")
        return value


OWN_PREFIXES = ("PORTKEY_", "THREAD_", "MAX_", "LATE_WRITE_", "DLQ_", "METADATA_")
"""Prefixes of the function's own variables: any other variable with one is most likely misspelt."""

_warned: set[str] = set()  # names already reported by this container


def known_variables() -> frozenset[str]:
    """Every variable the function reads: the Settings aliases, so the list cannot drift from them."""
    return frozenset(field.alias for field in Settings.model_fields.values() if field.alias)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """Variables with one of the function's prefixes that it does not read (``MAX_ATEMPTS``)."""
    known = known_variables()
    return sorted(name for name in environ if name.startswith(OWN_PREFIXES) and name not in known)


def _warn_unknown(environ: Mapping[str, str]) -> None:
    """One WARNING per container for each unknown variable, with the closest known name: a misspelt
    variable is otherwise ignored without a word while its default applies. Names only, never values."""
    new = [name for name in unknown_variables(environ) if name not in _warned]
    if not new:
        return
    _warned.update(new)
    known = sorted(known_variables())
    import difflib  # only when a variable is unknown: not on every cold start

    hints = {name: difflib.get_close_matches(name, known, n=1) for name in new}
    logger.warning(
        "unknown variables ignored: "
        + ", ".join(f"{name} (did you mean {hint[0]}?)" if hint else name for name, hint in hints.items()),
        extra={"unknown_variables": new},
    )


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Validate the environment; a bad or missing variable is a ConfigurationError naming it."""
    values = os.environ if environ is None else environ
    _warn_unknown(values)
    try:
        return Settings.model_validate(dict(values))
    except ValidationError as error:
        raise ConfigurationError(f"invalid environment: {describe_validation_error(error)}") from None
