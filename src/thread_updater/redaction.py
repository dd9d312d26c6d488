"""Upstream text is untrusted: remove credentials from it before it is logged, dead-lettered or raised.

An upstream error body can carry what the request sent: a custom host or a provider that echoes the
``Authorization`` header puts the provider key into the answer, and OpenAI-style 401 texts quote a
(masked) key. Every piece of upstream text therefore passes through ``redact`` first:

* every string value of the secret (and every header built from it) is replaced, in the forms an
  echo may use: as is, JSON-escaped, URL-encoded (``%20`` and ``+`` spaces) and base64 (standard and
  URL-safe, with or without padding);
* anything that looks like a token is replaced too, whatever the secret holds: ``Bearer <token>``
  and ``sk-…`` keys (OpenAI, Anthropic and most providers' key format);
* the result is clipped to ``UPSTREAM_TEXT_LIMIT`` characters (a dead letter and a log line carry a
  reason, not a copy of whatever the upstream sent).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus

__all__ = ["REDACTED", "UPSTREAM_TEXT_LIMIT", "redact"]

UPSTREAM_TEXT_LIMIT = 300
"""Characters of upstream error text kept in a log line, a dead letter or an exception."""
REDACTED = "[REDACTED]"

_TOKEN_PATTERNS = re.compile(
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=*:-]+"  # an Authorization value, whatever the token looks like
    r"|\bsk-[A-Za-z0-9._*-]{6,}"  # provider keys: sk-..., sk-proj-..., sk-ant-..., masked sk-****abcd
)
_MIN_SECRET_LENGTH = 4  # shorter values (a provider slug like "groq" is not one) would shred any text


def _forms(value: str) -> set[str]:
    """The ways an echo may spell ``value``."""
    encoded = value.encode()
    forms = {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }
    for b64 in (base64.b64encode(encoded).decode(), base64.urlsafe_b64encode(encoded).decode()):
        forms |= {b64, b64.rstrip("=")}
    return {form for form in forms if len(form) >= _MIN_SECRET_LENGTH}


def redact(text: str, secret_values: Iterable[str] = (), *, limit: int = UPSTREAM_TEXT_LIMIT) -> str:
    """``text`` without any form of ``secret_values`` or token-looking strings, clipped to ``limit``.

    Clipping comes last, so a cut can never leave the start of a secret behind.
    """
    forms = {form for value in secret_values if len(value) >= _MIN_SECRET_LENGTH for form in _forms(value)}
    for form in sorted(forms, key=len, reverse=True):  # longest first: a value inside another
        text = text.replace(form, REDACTED)
    text = _TOKEN_PATTERNS.sub(REDACTED, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
