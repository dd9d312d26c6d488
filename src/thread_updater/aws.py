"""botocore settings for the function's own AWS calls (Secrets Manager, the DLQs, SQS, DynamoDB).

Bounded so an AWS hiccup cannot eat the invocation: the worst case of one call is known and
enforced, and every caller starts a call only while that much time is left before its deadline
(the invocation's, less its margin), so every call ends by that deadline.

botocore's ``connect_timeout`` and ``read_timeout`` bound each socket operation, not a call: an
answer trickling in one byte every half second never times out (and its per-request
``read_timeout`` override is per read too). botocore offers no whole-call timeout and no hook that
interrupts a read, so that part is hand-rolled: the client's connections are given
``deadline_io``'s watchdog (botocore's own connection classes with the deadline mixin), and every
call made through ``LazyClient`` runs under ``bounded_by`` its worst case (``worst_case_call_s``),
or a caller's tighter deadline. A call cut that way raises botocore's ``ReadTimeoutError``, even
when what had arrived parsed as an answer (a status line cut short reads as a 200): like any AWS
timeout its outcome is unknown (the request may have been carried out), which every caller already
treats as a failure to retry.

What botocore does offer is used: its ``needs-retry`` event. botocore sleeps its backoff before a
retry (< 1 s for the one retry here, up to 5 s more when an answer carries ``x-amz-retry-after``
and the new retry behaviour is on) without looking at any deadline, and a watchdog cannot cut a
sleep; ``_retry_only_if_it_fits`` vetoes a retry whose backoff and one attempt no longer fit in
the bound, so a call cut at its bound (or failing just before it) is not followed by a sleep past it.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from typing import TYPE_CHECKING, Any

from thread_updater.deadline_io import DeadlineConnection, bounded_by, current_deadline
from thread_updater.observability import logger

if TYPE_CHECKING:
    from botocore.config import Config

CONNECT_TIMEOUT_S = 1
READ_TIMEOUT_S = 2
MAX_ATTEMPTS = 2  # botocore "standard" retry mode: one retry with jittered backoff (< 1 s)


def worst_case_call_s(attempts: int = MAX_ATTEMPTS) -> float:
    """How long one call may take, whatever the answer's pace: each attempt connects and reads, and
    each retry waits for botocore's backoff (< 1 s) first. ``LazyClient`` enforces it."""
    return attempts * (CONNECT_TIMEOUT_S + READ_TIMEOUT_S) + (attempts - 1)


WORST_CASE_CALL_S = worst_case_call_s()

_FIRST_BACKOFF_S = 1.0  # botocore's first retry waits rand(0, 1) x (a scale <= 1) seconds
_RETRY_AFTER_HEADER = "x-amz-retry-after"  # milliseconds; botocore honours it up to 5 s longer
_RETRY_AFTER_CAP_S = 5.0


def bounded_config(attempts: int = MAX_ATTEMPTS) -> Config:
    """Connect and read timeouts on every call, and ``attempts`` in botocore's "standard" mode."""
    from botocore.config import Config

    return Config(
        connect_timeout=CONNECT_TIMEOUT_S,
        read_timeout=READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": attempts},
    )


@functools.cache
def _deadline_pool_classes() -> dict[str, type]:
    """botocore's connection pools, whose connections obey ``deadline_io.bounded_by``."""
    from botocore.awsrequest import (
        AWSHTTPConnection,
        AWSHTTPConnectionPool,
        AWSHTTPSConnection,
        AWSHTTPSConnectionPool,
    )

    http_connection = type("DeadlineAWSHTTPConnection", (DeadlineConnection, AWSHTTPConnection), {})
    https_connection = type("DeadlineAWSHTTPSConnection", (DeadlineConnection, AWSHTTPSConnection), {})
    return {
        "http": type(
            "DeadlineAWSHTTPConnectionPool", (AWSHTTPConnectionPool,), {"ConnectionCls": http_connection}
        ),
        "https": type(
            "DeadlineAWSHTTPSConnectionPool", (AWSHTTPSConnectionPool,), {"ConnectionCls": https_connection}
        ),
    }


def _retry_only_if_it_fits(response: Any = None, **_: Any) -> bool | None:
    """botocore's ``needs-retry`` hook, registered before its own retry handler (the first answer
    that is not ``None`` wins): ``False``, no retry, when botocore's longest backoff plus one attempt
    no longer fit in the enclosing ``bounded_by``; otherwise ``None``, botocore decides. (botocore's
    handler still runs and may take a token of its retry quota for the retry vetoed here; the
    quota refills on successful calls.)"""
    deadline = current_deadline()
    if deadline is None:
        return None
    backoff_s = _FIRST_BACKOFF_S
    headers = getattr(response[0], "headers", None) if isinstance(response, tuple) and response else None
    retry_after = headers.get(_RETRY_AFTER_HEADER) if headers is not None else None
    if retry_after is not None:
        with contextlib.suppress(ValueError, OverflowError):  # botocore ignores a malformed value too
            backoff_s += min(max(0.0, int(retry_after) / 1000), _RETRY_AFTER_CAP_S)
    if deadline.remaining() < backoff_s + CONNECT_TIMEOUT_S + READ_TIMEOUT_S:
        return False
    return None


def _obey_deadlines(client: Any) -> None:
    """Give the client's connections the watchdog. botocore has no public way to choose them: its
    ``URLLib3Session`` keeps the pool classes in ``_pool_classes_by_scheme`` (for proxy managers made
    later) and sets them on its ``PoolManager`` itself, which is what this does too, before any pool
    exists. Should a botocore release rename these, calls keep their per-read bounds only, loudly
    (and the dripping-AWS tests fail)."""
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    manager = getattr(session, "_manager", None)
    if session is None or manager is None or not hasattr(session, "_pool_classes_by_scheme"):
        logger.warning(
            "botocore's connection pools cannot be given deadlines: AWS calls are bounded per read"
        )
        return
    classes = _deadline_pool_classes()
    session._pool_classes_by_scheme = classes
    manager.pool_classes_by_scheme = classes


class _BoundedClient:
    """A boto3 client whose every call ends within ``worst_case_s`` (or an enclosing ``bounded_by``)."""

    def __init__(self, client: Any, worst_case_s: float) -> None:
        self._client = client
        self._worst_case_s = worst_case_s

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        @functools.wraps(attribute)
        def bounded(*args: Any, **kwargs: Any) -> Any:
            from botocore.exceptions import ReadTimeoutError

            failure: Exception | None = None
            with bounded_by(time.monotonic() + self._worst_case_s) as bound:
                try:
                    answer = attribute(*args, **kwargs)
                except Exception as error:  # re-raised below unless the watchdog explains it
                    failure = error
            if bound.expired:  # read once the block is left: the watchdog cannot act any more
                raise ReadTimeoutError(endpoint_url=self._client.meta.endpoint_url) from failure
            if failure is not None:
                raise failure
            return answer

        return bounded


class LazyClient:
    """A boto3 client made on first use, once per container: most invocations never need it, and
    importing boto3 costs a cold start ~100 ms. Creation is locked (boto3's client factory is not
    thread-safe); the client itself is, so workers share it. Every call through it is bounded as a
    whole by ``worst_case_call_s(attempts)`` (see the module's docstring)."""

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
                client = session.client(self._service, config=config)  # type: ignore[call-overload]
                _obey_deadlines(client)
                service = client.meta.service_model.service_id.hyphenize()  # its retry handler's event
                client.meta.events.register_first(f"needs-retry.{service}", _retry_only_if_it_fits)
                self._client = _BoundedClient(client, worst_case_call_s(self._attempts))
            return self._client
