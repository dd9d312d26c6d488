"""botocore settings for the function's own AWS calls (Secrets Manager, the DLQs, SQS, DynamoDB).

Bounded so an AWS hiccup cannot eat the invocation: the worst case of one call is known, and a
dead letter is only attempted while that much time is left.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from botocore.config import Config

CONNECT_TIMEOUT_S = 1
READ_TIMEOUT_S = 2
MAX_ATTEMPTS = 2  # botocore "standard" retry mode: one retry with jittered backoff (< 1 s)
WORST_CASE_CALL_S = MAX_ATTEMPTS * (CONNECT_TIMEOUT_S + READ_TIMEOUT_S) + 1


def bounded_config(attempts: int = MAX_ATTEMPTS) -> Config:
    """Connect and read timeouts on every call, and ``attempts`` in botocore's "standard" mode."""
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )


class LazyClient:
    """A boto3 client made on first use, once per container: most invocations never need it, and
    importing boto3 costs a cold start ~100 ms. Creation is locked (boto3's client factory is not
    thread-safe); the client itself is, so workers share it."""

    def __init__(self, service: str, *, attempts: int = MAX_ATTEMPTS) -> None:
        self._service = service
        self._attempts = attempts
        self._client: Any = None
        self._lock = threading.Lock()

    def __call__(self) -> Any:
        with self._lock:
            if self._client is None:
                import boto3

                session = boto3.session.Session()
                # the stubs know clients by literal service name only; callers annotate the type
                config = bounded_config(self._attempts)
                self._client = session.client(self._service, config=config)  # type: ignore[call-overload]
            return self._client
