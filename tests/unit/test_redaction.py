"""Upstream text is untrusted: every form of every secret value, and token-looking strings, are removed."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote, quote_plus

import pytest

from thread_updater.credentials import credentials_from_secret
from thread_updater.redaction import REDACTED, UPSTREAM_TEXT_LIMIT, redact

KEY = "pk-live-0123456789"
PROVIDER_KEY = "az-provider key/with+odd=chars"
CONFIG = {"provider": "openai", "api_key": "oa-nested-987654"}


@pytest.mark.parametrize(
    "encode",
    [
        lambda value: value,
        lambda value: json.dumps(value)[1:-1],
        lambda value: quote(value, safe=""),
        lambda value: quote_plus(value),
        lambda value: base64.b64encode(value.encode()).decode(),
        lambda value: base64.urlsafe_b64encode(value.encode()).decode().rstrip("="),
    ],
    ids=["raw", "json-escaped", "url-encoded", "url-encoded-plus", "base64", "base64url-unpadded"],
)
@pytest.mark.parametrize("value", [KEY, PROVIDER_KEY, f"Bearer {PROVIDER_KEY}", CONFIG["api_key"]])
def test_every_form_of_every_secret_value_is_removed(encode: object, value: str) -> None:
    # Given the credentials of a secret with a nested config and a provider key
    secret = {"api_key": KEY, "provider": "azure-openai", "provider_auth": PROVIDER_KEY}
    values = (
        credentials_from_secret(secret).secret_values
        + credentials_from_secret({"api_key": KEY, "config": CONFIG}).secret_values
    )
    assert callable(encode)
    echoed = f"upstream said: {encode(value)} (request refused)"

    # When the upstream text is redacted, Then no form of the value is left
    redacted = redact(echoed, values)
    assert encode(value) not in redacted
    assert REDACTED in redacted
    assert redacted.startswith("upstream said: ")


@pytest.mark.parametrize(
    "token",
    [
        "Bearer abc.def-123",
        "bearer   xyz",
        "sk-proj-AbCdEf123456",
        "sk-ant-api03-xyz_789",
        "sk-****************wxyz",
    ],
)
def test_token_looking_strings_are_removed_whatever_the_secret_holds(token: str) -> None:
    # Given an OpenAI-style 401 text quoting a key the secret does not hold
    text = f"Incorrect API key provided: {token}. You can find your API key at https://platform.openai.com."

    # When it is redacted without any secret values, Then the token is gone and the rest is readable
    redacted = redact(text)
    assert token not in redacted
    assert redacted.startswith("Incorrect API key provided: [REDACTED]")


def test_the_text_is_clipped_after_redaction_so_no_secret_prefix_survives_the_cut() -> None:
    # Given a long text with a secret value straddling the clip boundary
    text = "x" * (UPSTREAM_TEXT_LIMIT - 5) + KEY + "y" * 1000

    # When it is redacted
    redacted = redact(text, [KEY])

    # Then it is clipped to the documented limit and not even the key's start remains
    assert len(redacted) == UPSTREAM_TEXT_LIMIT
    assert KEY[:5] not in redacted
    assert redacted.endswith("…")


def test_ordinary_text_is_kept() -> None:
    assert redact("No thread found with id 'thread_1'.", [KEY]) == "No thread found with id 'thread_1'."
