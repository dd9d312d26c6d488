"""What an answer (or a failed attempt) from Portkey means for the update: one table, one place.

=====================================  ==========  =====================================================
answer                                 verdict     why
=====================================  ==========  =====================================================
2xx                                    APPLIED     the thread now holds the update
401                                    AUTH        credentials refused: read the secret again once and
                                                   retry; refused again → configuration error
403                                    FORBIDDEN   if the same credentials were accepted for another
                                                   request, this update is forbidden → rejected;
                                                   otherwise treated like 401 (credentials)
402                                    ACCOUNT     the provider's billing (credit, payment method):
                                                   account-level, fixed by an operator, not the update
412                                    ACCOUNT     Portkey's budget or usage limit is exhausted:
                                                   account-level, like 402
409, 400 naming an active run          CONTENTION  the thread is busy (another write, a run in
                                                   progress): back off and retry, then hand back
429                                    TRANSIENT   the server asks us to come back later
408                                    TRANSIENT   and *uncertain*: a timeout of Portkey or of the
                                                   provider, maybe after the request was forwarded
other 4xx (400, 404, 422, ...)         REJECTED    the update itself is refused: retrying cannot help
5xx                                    TRANSIENT   the upstream failed; it may work in a moment
no connection (refused, DNS, connect)  TRANSIENT   nothing was sent
read timeout, dropped/cut-off answer   TRANSIENT   and *uncertain*: it may still be applied later
=====================================  ==========  =====================================================

Where each verdict ends: APPLIED → applied; REJECTED → dead letter "rejected"; TRANSIENT and
CONTENTION → retried inside the invocation, then handed back; AUTH (after the one refresh) and
ACCOUNT → a configuration-level error: every unfinished record goes back to the queue, the
``ConfigurationErrors`` metric and one ERROR line say what to fix; never a dead letter.

"Uncertain" matters for ordering: a request whose outcome is unknown may be written by the upstream
after we gave up on it (a late write), so the state table keeps a marker and heals the thread later.
A 5xx other than 503 is uncertain too: the upstream may have applied the update before failing. So
is a 408: Portkey documents it as a Portkey *or* provider timeout, and its ``request_timeout``
aborts a request it has already forwarded, which the provider may still write. Only answers that
say the request was not processed (429, 503) are certain.
"""

from __future__ import annotations

import re
from enum import StrEnum

from urllib3.exceptions import ConnectTimeoutError, HTTPError, NewConnectionError

__all__ = [
    "ACCOUNT_STATUSES",
    "AUTH_STATUSES",
    "TRANSIENT_STATUSES",
    "Verdict",
    "classify_status",
    "is_uncertain",
]

TRANSIENT_STATUSES = frozenset({408, 429})
AUTH_STATUSES = frozenset({401, 403})
ACCOUNT_STATUSES = frozenset({402, 412})
CONFLICT_STATUS = 409
# OpenAI's words for a thread that has a run in progress ("Can't modify thread … while a run … is
# active", "Thread … already has an active run …"); Portkey passes them through with status 400.
_ACTIVE_RUN = re.compile(r"\bactive run\b|\bwhile a run\b.*\bis active\b", re.IGNORECASE)
# Answers that say the request was not processed: nothing can land later.
_NOT_PROCESSED_STATUSES = frozenset({429, 503})
# Timeouts that can follow a request already forwarded (Portkey's request_timeout, a provider's 408).
_FORWARDED_TIMEOUT_STATUSES = frozenset({408})


class Verdict(StrEnum):
    APPLIED = "applied"
    AUTH = "auth"
    FORBIDDEN = "forbidden"
    ACCOUNT = "account"
    CONTENTION = "contention"
    REJECTED = "rejected"
    TRANSIENT = "transient"


def classify_status(status: int, message: str = "") -> Verdict:
    """The verdict for an HTTP answer and its error message (see the module's table)."""
    if 200 <= status < 300:
        return Verdict.APPLIED
    if status == 403:
        return Verdict.FORBIDDEN
    if status in AUTH_STATUSES:
        return Verdict.AUTH
    if status in ACCOUNT_STATUSES:
        return Verdict.ACCOUNT
    if status == CONFLICT_STATUS or (status == 400 and _ACTIVE_RUN.search(message)):
        return Verdict.CONTENTION
    if status < 500 and status not in TRANSIENT_STATUSES:
        return Verdict.REJECTED
    return Verdict.TRANSIENT


def is_uncertain(*, status: int | None = None, error: HTTPError | None = None) -> bool:
    """Whether a failed attempt may still be applied upstream later (see the module's docstring)."""
    if error is not None:
        return not isinstance(error, (NewConnectionError, ConnectTimeoutError))
    if status is None or status in _NOT_PROCESSED_STATUSES:
        return False
    return status >= 500 or status in _FORWARDED_TIMEOUT_STATUSES
