"""What an answer (or a failed attempt) from Portkey means for the update: one table, one place.

======================================  =========  ====================================================
answer                                  verdict    why
======================================  =========  ====================================================
2xx                                     APPLIED    the thread now holds the update
401, 403                                AUTH       credentials refused: refresh the secret once
408, 429                                TRANSIENT  the server asks us to come back later
other 4xx (400, 404, 422, ...)          REJECTED   the update itself is refused: retrying cannot help
5xx                                     TRANSIENT  the upstream failed; it may work in a moment
no connection (refused, DNS, connect)   TRANSIENT  nothing was sent
read timeout, dropped/cut-off answer    TRANSIENT  and *uncertain*: it may still be applied later
======================================  =========  ====================================================

"Uncertain" matters for ordering: a request whose outcome is unknown may be written by the upstream
after we gave up on it (a late write), so the state table keeps a marker and heals the thread later.
A 5xx other than 503 is uncertain too: the upstream may have applied the update before failing.
"""

from __future__ import annotations

from enum import StrEnum

from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError

__all__ = ["AUTH_STATUSES", "TRANSIENT_STATUSES", "Verdict", "classify_status", "is_uncertain"]

TRANSIENT_STATUSES = frozenset({408, 429})
AUTH_STATUSES = frozenset({401, 403})
# Answers that say the request was not processed: nothing can land later.
_NOT_PROCESSED_STATUSES = frozenset({408, 429, 503})


class Verdict(StrEnum):
    APPLIED = "applied"
    AUTH = "auth"
    REJECTED = "rejected"
    TRANSIENT = "transient"


def classify_status(status: int) -> Verdict:
    """The verdict for an HTTP answer (see the module's table)."""
    if 200 <= status < 300:
        return Verdict.APPLIED
    if status in AUTH_STATUSES:
        return Verdict.AUTH
    if status < 500 and status not in TRANSIENT_STATUSES:
        return Verdict.REJECTED
    return Verdict.TRANSIENT


def is_uncertain(*, status: int | None = None, error: HTTPError | None = None) -> bool:
    """Whether a failed attempt may still be applied upstream later (see the module's docstring)."""
    if error is not None:
        return not isinstance(error, (NewConnectionError, ConnectTimeoutError))
    return status is not None and status >= 500 and status not in _NOT_PROCESSED_STATUSES
