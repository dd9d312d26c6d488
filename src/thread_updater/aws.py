"""botocore settings for the function's own AWS calls (Secrets Manager, the DLQ).

Bounded so an AWS hiccup cannot eat the invocation: the worst case of one call is known, and a
dead letter is only attempted while that much time is left.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from botocore.config import Config

CONNECT_TIMEOUT_S = 1
READ_TIMEOUT_S = 2
MAX_ATTEMPTS = 2  # botocore "standard" retry mode: one retry with jittered backoff (< 1 s)
WORST_CASE_CALL_S = MAX_ATTEMPTS * (CONNECT_TIMEOUT_S + READ_TIMEOUT_S) + 1


def bounded_config() -> Config:
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    )
