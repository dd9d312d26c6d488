"""Every retry delay the function chooses, in one place: how long before something is tried again.

Two clocks: *within* an invocation (the next HTTP attempt of one call: a blocking sleep, bounded by
the deadline) and *across* invocations (a handed-back SQS record's visibility: the queue brings it
back, instead of after the queue's whole visibility timeout, 660 s on this stack's queue).

=================================  ====================================  =====================================
what is retried                    delay                                 where it is applied
=================================  ====================================  =====================================
Modify attempt after a 429/5xx/    the server's Retry-After, else        ``portkey`` (a Retry-After that asks
network error                      uniform(0, min(5 s, 0.2 s·2^(n-1)))   for a pause holds the container's
                                                                         gate instead: ``ratelimit``)
Modify attempt after a 409 or an   uniform(0, min(5 s, 1 s·2^(n-1)))     ``portkey``: a busy thread frees
active run (contention)                                                  up in seconds, not milliseconds
GetSecretValue after a transient   uniform(0, 0.5 s), once               ``secret_store``
error
AWS calls (SQS, DynamoDB, ...)     botocore's own (standard mode, one    ``aws`` (counted in its worst case)
                                   retry, < 1 s)
record back: transient (429, 5xx,  2 s·2^(n-1) from the receive count n, ``handback``
network, state table down)         equal jitter, at least Retry-After,
                                   at most 300 s
record back: target held by        until that lease ends (at least 1 s)  ``handback``
another invocation                 + uniform(0, 1 s), at most 300 s
record back: waiting for a write   until that write's heal time (at      ``handback``: one receive per wait,
in doubt                           least 1 s) + uniform(0, 1 s), at      so a long heal delay cannot exhaust
                                   most 12 h (SQS's longest visibility)  the queue's MaxReceiveCount
record back: outcome unknown       LATE_WRITE_HEAL_DELAY_SECONDS         ``applier`` (the heal delay: by
(a late write may still land)                                            then it has landed or never will)
record back: configuration error   unchanged: the queue's visibility     nothing fixes itself in seconds
                                   timeout
=================================  ====================================  =====================================

Every jitter is there so that waiters that failed together do not come back together.
"""

from __future__ import annotations

import random

__all__ = [
    "BACKOFF_BASE_S",
    "BACKOFF_CAP_S",
    "CONTENTION_BACKOFF_BASE_S",
    "MAX_VISIBILITY_S",
    "RETRY_BASE_S",
    "RETRY_CAP_S",
    "attempt_delay",
    "busy_delay",
    "secret_retry_pause",
    "transient_delay",
    "wait_delay",
]

BACKOFF_BASE_S = 0.2
BACKOFF_CAP_S = 5.0
CONTENTION_BACKOFF_BASE_S = 1.0
SECRET_RETRY_JITTER_S = 0.5
RETRY_BASE_S = 2.0
RETRY_CAP_S = 300.0
MAX_VISIBILITY_S = 43_200.0  # SQS: a visibility timeout is at most 12 hours


def attempt_delay(attempts: int, retry_after_s: float | None, *, contention: bool) -> tuple[float, int]:
    """Before the next Modify attempt: seconds to wait, and 1 if the server asked for them
    (Retry-After), else 0 and full-jitter backoff from the attempts made so far."""
    if retry_after_s is not None:
        return retry_after_s, 1
    base_s = CONTENTION_BACKOFF_BASE_S if contention else BACKOFF_BASE_S
    ceiling = min(BACKOFF_CAP_S, base_s * 2 ** (attempts - 1))
    return random.uniform(0, ceiling), 0  # noqa: S311 - jitter, not cryptography


def secret_retry_pause() -> float:
    """Before reading the secret again after a transient error."""
    return random.uniform(0, SECRET_RETRY_JITTER_S)  # noqa: S311 - jitter, not cryptography


def transient_delay(receive_count: int, retry_after_s: float | None) -> float:
    """Exponential backoff from the receive count with equal jitter, at least ``retry_after_s``."""
    ceiling = min(RETRY_CAP_S, RETRY_BASE_S * 2.0 ** min(max(receive_count, 1) - 1, 16))
    delay = ceiling / 2 + random.uniform(0, ceiling / 2)  # noqa: S311 - jitter, not cryptography
    return round(min(RETRY_CAP_S, max(delay, retry_after_s or 0.0)), 1)


def busy_delay(until_ms: int | None, now_ms: int) -> float:
    """Until another invocation's lease on the target ends, with jitter so waiters do not collide."""
    return _until(until_ms, now_ms, cap_s=RETRY_CAP_S)


def wait_delay(until_ms: int | None, now_ms: int) -> float:
    """Until a write in doubt is healed (``heal_at``): one receive per wait, however long the wait."""
    return _until(until_ms, now_ms, cap_s=MAX_VISIBILITY_S)


def _until(until_ms: int | None, now_ms: int, *, cap_s: float) -> float:
    remaining_s = max(1.0, ((until_ms or now_ms) - now_ms) / 1000)
    return round(min(cap_s, remaining_s + random.uniform(0, 1)), 1)  # noqa: S311 - jitter
