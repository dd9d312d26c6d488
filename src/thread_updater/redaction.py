"""Upstream text is untrusted: remove credentials from it before it is logged, dead-lettered or raised.

An upstream error body can carry what the request sent: a custom host or a provider that echoes the
``Authorization`` header puts the provider key into the answer, and OpenAI-style 401 texts quote a
(masked) key. Every piece of upstream text therefore passes through ``redact`` first:

* every string value of the secret (and every header built from it) is replaced, in the forms an
  echo may use, character by character and mixed freely: as is; JSON-escaped, with the optional
  ``\\/`` escape, ``\\uXXXX`` escapes in either case and up to three levels of nesting (a JSON
  document quoted inside another); percent-encoded in either case, once or twice, with ``+`` for
  a space;
* and encoded as a whole: base64 (standard and URL-safe) of the value alone, padded or not, and of
  the value *inside* a longer encoded text at any of the three byte offsets base64 can put it at
  (only the characters that depend on the value alone are matched: the edge characters mix in
  the neighbouring bytes); hex, lower or upper case;
* anything that looks like a token is replaced too, whatever the secret holds: ``Bearer <token>``
  and ``sk-…`` keys (OpenAI, Anthropic and most providers' key format);
* the result is clipped to ``UPSTREAM_TEXT_LIMIT`` characters (a dead letter and a log line carry a
  reason, not a copy of whatever the upstream sent).

The text is searched only as far as the clipped result can reach (plus the longest match), so a
megabyte of upstream error body costs no more than a short one.
"""

from __future__ import annotations

import base64
import functools
import re
from collections.abc import Callable, Iterable

__all__ = ["REDACTED", "UPSTREAM_TEXT_LIMIT", "redact"]

UPSTREAM_TEXT_LIMIT = 300
"""Characters of upstream error text kept in a log line, a dead letter or an exception."""
REDACTED = "[REDACTED]"

_LOOKS_LIKE_A_KEY = (
    r"(?i:bearer)\s+[A-Za-z0-9._~+/=*:-]+"  # an Authorization value, whatever the token looks like
    r"|\bsk-[A-Za-z0-9._*-]{6,}"  # provider keys: sk-..., sk-proj-..., sk-ant-..., masked sk-****abcd
)
_MIN_SECRET_LENGTH = 4  # shorter values (a provider slug like "groq" is not one) would shred any text

_ESCAPE = r"\\{1,4}"  # a JSON escape's backslash, doubled by each level of nesting (up to three)
_PERCENT = "%(?:25)?"  # percent-encoded once, or twice (%25 is the encoded "%")
_JSON_SHORT_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "\b": "b", "\f": "f", "\n": "n", "\r": "r", "\t": "t"}
_LONGEST_SPELLING = 20  # characters one character can take: %25XX for each of four UTF-8 bytes


def _hex_digits(hex_text: str) -> str:
    """A regex for hex digits in either case."""
    return "".join(f"[{digit.lower()}{digit.upper()}]" if digit.isalpha() else digit for digit in hex_text)


@functools.lru_cache(maxsize=512)
def _spellings(char: str) -> str:
    """A regex for every way an echo may spell one character (see the module's docstring)."""
    alternatives = [re.escape(char)]
    if char in _JSON_SHORT_ESCAPES:
        alternatives.append(_ESCAPE + re.escape(_JSON_SHORT_ESCAPES[char]))
    units = char.encode("utf-16-be", "surrogatepass").hex()
    alternatives.append(
        "".join(f"{_ESCAPE}u{_hex_digits(units[index : index + 4])}" for index in range(0, len(units), 4))
    )
    alternatives.append(
        "".join(f"{_PERCENT}{_hex_digits(f'{byte:02x}')}" for byte in char.encode("utf-8", "surrogatepass"))
    )
    if char == " ":
        alternatives.append(r"\+")
    return f"(?:{'|'.join(alternatives)})"


def _spelled(form: str, *, any_case: bool = False) -> str:
    """A regex for ``form`` spelled character by character (letters in either case if ``any_case``)."""
    if not any_case:
        return "".join(_spellings(char) for char in form)
    return "".join(
        f"(?:{_spellings(char.lower())}|{_spellings(char.upper())})" if char.isalpha() else _spellings(char)
        for char in form
    )


def _base64_forms(encoded: bytes, encode: Callable[[bytes], bytes]) -> set[str]:
    """The value's own base64 (padded and not), and the characters of it that any longer base64 text
    holding the value carries: for each of the three byte offsets, those whose six bits all come from
    the value."""
    whole = encode(encoded).decode()
    forms = {whole, whole.rstrip("=")}
    for offset in range(3):
        text = encode(b"\0" * offset + encoded).decode()
        first = -(-8 * offset // 6)  # the first character that starts inside the value
        end = 8 * (offset + len(encoded)) // 6  # past the last character that ends inside it
        forms.add(text[first:end])
    return forms


def _value_patterns(value: str) -> list[tuple[int, str]]:
    """(length, regex) of every form of ``value`` (see the module's docstring)."""
    encoded = value.encode("utf-8", "surrogatepass")
    patterns = [(len(value), _spelled(value)), (2 * len(encoded), _spelled(encoded.hex(), any_case=True))]
    for b64 in _base64_forms(encoded, base64.b64encode) | _base64_forms(encoded, base64.urlsafe_b64encode):
        if len(b64) >= _MIN_SECRET_LENGTH:
            patterns.append((len(b64), _spelled(b64)))
    return patterns


@functools.lru_cache(maxsize=16)
def _compiled(values: tuple[str, ...]) -> tuple[re.Pattern[str], int]:
    """One regex for every form of every value (longest first: a value inside another) and the token
    patterns; and how long a match of a value's form can be at most."""
    patterns = sorted(
        (pattern for value in values for pattern in _value_patterns(value)), key=lambda item: -item[0]
    )
    longest = max((length for length, _ in patterns), default=0) * _LONGEST_SPELLING
    alternatives = list(dict.fromkeys(pattern for _, pattern in patterns))
    return re.compile("|".join([*alternatives, _LOOKS_LIKE_A_KEY])), longest


def redact(text: str, secret_values: Iterable[str] = (), *, limit: int = UPSTREAM_TEXT_LIMIT) -> str:
    """``text`` without any form of ``secret_values`` or token-looking strings, clipped to ``limit``.

    Clipping comes last, so a cut can never leave the start of a secret behind.
    """
    values = tuple(sorted({value for value in secret_values if len(value) >= _MIN_SECRET_LENGTH}))
    pattern, longest = _compiled(values)
    pieces: list[str] = []
    size = position = 0
    while size < limit and position < len(text):
        # Only a match that starts within what the clipped result can still show matters; any form of
        # a value starting there ends within ``longest`` of it. Searched again from its start without
        # the bound, so that a match (a long token) is always replaced whole.
        window_end = position + (limit - size) + longest
        found = pattern.search(text, position, window_end)
        if found is None:
            pieces.append(text[position:window_end])
            size, position = size + window_end - position, window_end
            break
        whole = pattern.match(text, found.start())
        assert whole is not None  # it matched at this very position with a bound
        pieces += [text[position : found.start()], REDACTED]
        size += found.start() - position + len(REDACTED)
        position = whole.end()
    redacted = "".join(pieces)
    return redacted if len(redacted) <= limit and position >= len(text) else redacted[: limit - 1] + "…"
