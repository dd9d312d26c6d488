"""Upstream text is untrusted: every form of every secret value, and token-looking strings, are removed."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
        lambda value: json.dumps(value)[1:-1].replace("/", "\\/"),
        lambda value: json.dumps(value)[1:-1].replace("+", "\\u002b"),
        lambda value: json.dumps(value)[1:-1].replace("+", "\\u002B").replace(" ", "\\u0020"),
        lambda value: json.dumps(json.dumps(value).replace("/", "\\/"))[1:-1],
        lambda value: re.sub("%[0-9A-F]{2}", lambda escape: escape[0].lower(), quote(value, safe="")),
        lambda value: quote(quote(value, safe=""), safe=""),
        lambda value: value.encode().hex(),
        lambda value: value.encode().hex().upper(),
    ],
    ids=[
        "raw",
        "json-escaped",
        "url-encoded",
        "url-encoded-plus",
        "base64",
        "base64url-unpadded",
        "json-escaped-slash",
        "json-unicode-escape-lower",
        "json-unicode-escape-upper",
        "json-nested",
        "url-encoded-lower",
        "url-encoded-twice",
        "hex",
        "hex-upper",
    ],
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


AWS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCY+EXAMPLEKEY"  # an inline Bedrock config's secret access key


def test_a_key_echoed_by_an_encoder_that_escapes_slashes_is_removed() -> None:
    # Given an upstream that echoes the request's config the way PHP's json_encode does (``\/``)
    config = json.dumps({"provider": "bedrock", "aws_secret_access_key": AWS_SECRET})
    values = credentials_from_secret({"api_key": KEY, "config": json.loads(config)}).secret_values
    echoed = f'{{"error": {{"message": "bad config {config.replace("/", chr(92) + "/")}"}}}}'

    # When it is redacted, Then not even a slash-separated piece of the key is left
    redacted = redact(echoed, values, limit=10_000)
    assert all(piece not in redacted for piece in AWS_SECRET.split("/"))


def _base64_of_the_value_alone(encoded: str, prefix: bytes, value: bytes) -> str:
    """The characters of ``encoded`` (base64 of prefix + value + ...) whose six bits all come from value."""
    first = -(-8 * len(prefix) // 6)
    return encoded[first : 8 * (len(prefix) + len(value)) // 6]


SECRET_TEXT = st.text(st.characters(codec="utf-8"), min_size=8, max_size=40)


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    value=SECRET_TEXT,
    prefix=st.binary(max_size=7),
    suffix=st.binary(max_size=7),
    urlsafe=st.booleans(),
)
def test_base64_of_a_value_inside_a_longer_text_is_removed_at_any_offset(
    value: str, prefix: bytes, suffix: bytes, urlsafe: bool
) -> None:
    # Given a value base64-encoded inside a longer text (a Basic credential, an encoded JSON document),
    # at whatever byte offset the text puts it
    encode = base64.urlsafe_b64encode if urlsafe else base64.b64encode
    raw = value.encode()
    encoded = encode(prefix + raw + suffix).decode()

    # When the echo is redacted
    redacted = redact(f"echo: {encoded} end", [value], limit=10_000)

    # Then none of the characters that only the value determines is left
    assert _base64_of_the_value_alone(encoded, prefix, raw) not in redacted
    assert REDACTED in redacted


def _escaped(char: str, how: int) -> str:
    """``char`` as one of the encoders an echo may have gone through."""
    units = char.encode("utf-16-be", "surrogatepass")
    unicode_escape = "".join(f"\\u{units[index : index + 2].hex()}" for index in range(0, len(units), 2))
    percent = "".join(f"%{byte:02x}" for byte in char.encode())
    return [char, unicode_escape, unicode_escape.upper().replace("\\U", "\\u"), percent, percent.upper()][how]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(value=SECRET_TEXT, data=st.data())
def test_a_value_spelled_with_any_mix_of_escapes_is_removed(value: str, data: st.DataObject) -> None:
    # Given a value whose characters each went through some encoder: as is, \\u escapes in either
    # case, percent-encoding in either case
    hows = data.draw(st.lists(st.integers(0, 4), min_size=len(value), max_size=len(value)))
    spelled = "".join(_escaped(char, how) for char, how in zip(value, hows, strict=True))

    # When the echo is redacted, Then it is gone and the text around it kept
    redacted = redact(f"echo: {spelled} end", [value], limit=10_000)
    assert redacted == f"echo: {REDACTED} end"


@settings(max_examples=100, deadline=None, derandomize=True)
@given(value=SECRET_TEXT, before=st.text(min_size=250, max_size=320), after=st.text(max_size=400))
def test_the_clipped_result_is_the_same_as_redacting_everything_first(
    value: str, before: str, after: str
) -> None:
    # Given a value around where the clip falls, in any text (only part of it can be shown)
    text = f"{before}{value}{after}"

    # When it is redacted with the documented limit
    redacted = redact(text, [value])

    # Then it is what clipping the fully redacted text gives (the search stops early, never wrongly)
    full = redact(text, [value], limit=len(text) * 10 + 100)
    assert redacted == (full if len(full) <= UPSTREAM_TEXT_LIMIT else full[: UPSTREAM_TEXT_LIMIT - 1] + "…")
    assert value not in redacted
