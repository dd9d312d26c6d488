"""The Modify Thread / Modify Conversation call: one pooled urllib3 client, bounded retries.

urllib3's own ``Retry`` sleeps inside ``urlopen`` and knows nothing of the Lambda deadline or of
credential rotation, so the attempt loop is ours; urllib3 still provides the pool, the timeouts
and the ``Retry-After`` parsing (seconds or HTTP date, clamped at zero for skewed clocks).
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError, InvalidHeader
from urllib3.util.retry import Retry

from thread_updater.classification import Verdict, classify_status, is_uncertain
from thread_updater.credentials import CredentialSource, PortkeyCredentials
from thread_updater.deadline import Deadline
from thread_updater.deadline_io import DeadlinePassedError, bounded_by, pool_classes
from thread_updater.delays import attempt_delay
from thread_updater.errors import AccountLimitError, ConfigurationError
from thread_updater.models import Target, TargetKind
from thread_updater.observability import logger
from thread_updater.ratelimit import UpstreamLimiter, is_rate_limited
from thread_updater.redaction import redact
from thread_updater.secret_store import CredentialsUnavailable

# Stop retrying when less than this is left before the deadline: a request needs time to answer.
MIN_ATTEMPT_WINDOW_S = 0.5
_TRACE_ID_SAFE = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_RETRY_AFTER = Retry(total=0)  # only used for its Retry-After parser


BODY_CHUNK = 64 * 1024
MAX_BODY_BYTES = 1024 * 1024  # a Thread object is a few hundred bytes; anything this big is not one


class AnswerTooSlowError(HTTPError):
    """The answer did not finish arriving before the deadline (or was absurdly large): transient."""


class CallResult(StrEnum):
    APPLIED = "applied"
    REJECTED = "rejected"  # permanent: a 4xx the request itself caused
    TRANSIENT = "transient"  # retry later: 408/429/5xx/timeouts/connection errors, or out of time
    HALTED = "halted"  # a configuration or account problem stops the batch: ``CallOutcome.halt``


@dataclass(frozen=True, kw_only=True)
class CallOutcome:
    result: CallResult
    status: int | None
    attempts: int
    error: str | None = None
    trace_id: str | None = None
    latency_ms: float | None = None  # the last HTTP attempt, without backoff
    retry_after_waits: int = 0  # waits the server asked for with Retry-After
    # Some attempt's outcome is unknown (timed out, dropped, 5xx): the upstream may still apply it later.
    uncertain: bool = False
    retry_after_s: float | None = None  # what the last answer's Retry-After asked for
    # HALTED: the error to raise once the call is recorded (an attempt before it may be in doubt).
    halt: ConfigurationError | None = None


@dataclass(frozen=True)
class _Answer:
    status: int
    data: bytes
    trace_id: str | None
    retry_after_s: float | None  # the Retry-After header, parsed once

    @property
    def asks_for_a_pause(self) -> bool:
        """A 429/503 with a positive Retry-After: the whole container waits it out at the gate."""
        return is_rate_limited(self.status, self.retry_after_s)


@dataclass
class _CallProgress:
    """One ``modify_thread`` call so far: what its attempts saw, for the outcome it ends with."""

    attempts: int = 0  # every HTTP request, the retry after a key refresh included
    rate_limited: int = 0  # attempts refused with a Retry-After that fitted: bounded by time, not counted
    refreshed: bool = False
    retry_after_waits: int = 0
    latency_ms: float | None = None
    status: int | None = None
    trace_id: str | None = None
    last_error: str = "no attempt made"
    uncertain: bool = False
    retry_after_s: float | None = None

    @property
    def budget_used(self) -> int:
        """Attempts counted against ``MAX_ATTEMPTS``: neither the request refused before a key refresh
        nor those refused with a ``Retry-After`` that fitted the time left (bounded by time instead)."""
        return self.attempts - int(self.refreshed) - self.rate_limited

    def record(
        self, *, latency_ms: float, status: int | None, trace_id: str | None, error: str, uncertain: bool
    ) -> None:
        self.latency_ms, self.status, self.trace_id, self.last_error = latency_ms, status, trace_id, error
        self.uncertain = self.uncertain or uncertain

    def outcome(
        self, result: CallResult, error: str | None = None, *, halt: ConfigurationError | None = None
    ) -> CallOutcome:
        return CallOutcome(
            halt=halt,
            result=result,
            status=self.status,
            attempts=self.attempts,
            error=error,
            trace_id=self.trace_id,
            latency_ms=self.latency_ms,
            retry_after_waits=self.retry_after_waits,
            uncertain=self.uncertain,
            retry_after_s=self.retry_after_s,
        )


def retry_after_seconds(header: str | None) -> float | None:
    """A ``Retry-After`` header (seconds or HTTP date, clamped at zero) in seconds; None when absent,
    unparsable or absurd (then ordinary backoff applies)."""
    if header is None:
        return None
    try:
        return _RETRY_AFTER.parse_retry_after(header)
    except (InvalidHeader, ValueError, OverflowError):
        return None


def error_message(data: bytes) -> str:
    """Portkey/OpenAI error bodies are ``{"error": {"message": ...}}``; fall back to the raw text.

    Untrusted and unclipped: pass it through ``redaction.redact`` before it goes anywhere.
    """
    try:
        document: Any = json.loads(data)
    except ValueError:
        return data.decode("utf-8", "replace") or "(empty body)"
    error = document.get("error") if isinstance(document, dict) else None
    message = error.get("message") if isinstance(error, dict) else error
    if isinstance(message, str) and message:
        return message
    return json.dumps(document)


def sent_trace_id(message_id: str) -> str:
    """The ``x-portkey-trace-id`` for a message: its id, or an id derived from it when the id has
    characters (or a length) a header value should not carry; the derived id is logged."""
    if _TRACE_ID_SAFE.fullmatch(message_id):
        return message_id
    derived = f"derived-{hashlib.sha256(message_id.encode('utf-8', 'surrogatepass')).hexdigest()[:32]}"
    logger.info(
        "message id cannot be a trace id as is; sending a derived x-portkey-trace-id",
        extra={"message_id": message_id[:200], "portkey_trace_id": derived},
    )
    return derived


def account_problem(status: int | None, error: str) -> str:
    """What an operator must fix for a 402/412 (classification.py: ACCOUNT)."""
    if status == 402:
        return (
            "the provider answered HTTP 402 (payment required): add credit or fix the billing of the "
            f"provider account behind the Portkey credentials; updates are retried once it is fixed ({error})"
        )
    return (
        f"Portkey answered HTTP {status} (budget or usage limit exhausted): raise or reset the limit of the "
        f"Portkey workspace, API key or virtual key; updates are retried once it is lifted ({error})"
    )


def create_pool(max_concurrency: int, connect_timeout_s: float, read_timeout_s: float) -> urllib3.PoolManager:
    """One pool per container: keep-alive across invocations, never more connections than workers;
    its connections obey ``deadline_io.bounded_by`` (a whole attempt, not each read, ends by then)."""
    pool = urllib3.PoolManager(
        num_pools=4,
        maxsize=max_concurrency,
        block=True,
        retries=False,
        timeout=urllib3.Timeout(connect=connect_timeout_s, read=read_timeout_s),
    )
    pool.pool_classes_by_scheme = pool_classes()
    return pool


@dataclass(frozen=True, kw_only=True)
class CallLimits:
    """How long and how often one update may try: attempts per update and per-request timeouts."""

    max_attempts: int
    connect_timeout_s: float
    read_timeout_s: float


class PortkeyClient:
    """Sends Modify Thread and Modify Conversation requests and classifies the answers."""

    def __init__(
        self,
        base_url: str,
        pool: urllib3.PoolManager,
        credentials: CredentialSource,
        *,
        limits: CallLimits,
        limiter: UpstreamLimiter | None = None,
    ) -> None:
        self._base_url = base_url
        self._limiter = limiter or UpstreamLimiter()
        self._pool = pool
        self._credentials = credentials
        self._max_attempts = limits.max_attempts
        self._connect_timeout_s = limits.connect_timeout_s
        self._read_timeout_s = limits.read_timeout_s

    def url(self, target: Target) -> str:
        return f"{self._base_url}/{target.path}"

    def _post(self, url: str, body: bytes, headers: dict[str, str], deadline: Deadline) -> _Answer:
        """One attempt, never past ``deadline``: connecting, sending, the headers and the body.

        urllib3's timeouts (``total`` included) bound each socket read, not the whole answer, so a
        server that trickles its headers or its body could hold us past the deadline: the attempt
        runs under ``deadline_io.bounded_by``, whose watchdog shuts the socket down at the deadline,
        and the body is read in pieces and dropped once the deadline passes. An attempt the watchdog
        cut is never taken for an answer, whatever was read: http.client parses a status line cut
        short ("HTTP/1.1 200 O") as a complete 200 without headers.
        """
        remaining = deadline.remaining_s()
        timeout = urllib3.Timeout(
            total=remaining,
            connect=min(self._connect_timeout_s, remaining),
            read=min(self._read_timeout_s, remaining),
        )
        data = bytearray()
        failure: Exception | None = None
        with bounded_by(deadline.at) as bound:
            try:
                response = self._pool.request(
                    "POST",
                    url,
                    body=body,
                    headers=headers,
                    timeout=timeout,
                    redirect=False,
                    retries=False,
                    preload_content=False,
                )
                try:
                    while chunk := response.read1(BODY_CHUNK):
                        data += chunk
                        if deadline.remaining_s() < 0 or len(data) > MAX_BODY_BYTES:
                            response.close()  # this connection must not go back to the pool half-read
                            raise AnswerTooSlowError(
                                f"answer not complete by the deadline ({len(data)} bytes read)"
                            )
                finally:
                    response.release_conn()
            except (HTTPError, OSError) as error:
                failure = error
        # Read once the block is left: from then on, the watchdog cannot cut this attempt any more.
        if bound.expired and not isinstance(failure, DeadlinePassedError | AnswerTooSlowError):
            raise AnswerTooSlowError(
                f"answer not complete by the deadline ({len(data)} bytes read)"
            ) from failure
        if failure is not None:
            raise failure
        return _Answer(
            status=response.status,
            data=bytes(data),
            trace_id=response.headers.get("x-portkey-trace-id"),
            retry_after_s=retry_after_seconds(response.headers.get("Retry-After")),
        )

    def modify(
        self, target: Target, body: dict[str, Any], *, trace_id: str, deadline: Deadline
    ) -> CallOutcome:
        """Modify the target with ``body``; retries transient answers until attempts or time run out.

        ``deadline`` is a ``time.monotonic()`` value; no request starts and no backoff sleeps past it.
        A 429/503 whose ``Retry-After`` fits the time left is waited out (at the container's gate) and
        does not use up an attempt: rate-limit waits are bounded by the deadline, not by MAX_ATTEMPTS.
        Ends HALTED (``halt``: a ConfigurationError) when Portkey still refuses the credentials after
        one refresh, or with an AccountLimitError for an account-level answer (402, 412): returned, not
        raised, so that the caller records an earlier attempt in doubt before stopping the batch.
        """
        call = _CallProgress()
        try:
            return self._modify(target, body, call, trace_id=trace_id, deadline=deadline)
        except ConfigurationError as error:
            return call.outcome(CallResult.HALTED, str(error), halt=error)

    def _modify(
        self, target: Target, body: dict[str, Any], call: _CallProgress, *, trace_id: str, deadline: Deadline
    ) -> CallOutcome:
        url = self.url(target)
        payload = json.dumps(body, separators=(",", ":"), ensure_ascii=True).encode()  # always encodable
        try:
            generation, credentials = self._credentials.current(deadline)
        except CredentialsUnavailable as error:
            return call.outcome(CallResult.TRANSIENT, str(error))
        trace_header = sent_trace_id(trace_id)
        while call.budget_used < self._max_attempts:
            # Waits for the container's gate and pace; False when that (or the deadline) leaves no time.
            if not self._limiter.acquire(deadline.minus(MIN_ATTEMPT_WINDOW_S).at):
                return call.outcome(CallResult.TRANSIENT, f"out of time: {call.last_error}")
            call.attempts += 1
            headers = self._headers(credentials, trace_header, target)
            answer = self._attempt(url, payload, headers, call, credentials.secret_values, deadline)
            verdict = classify_status(answer.status, call.last_error) if answer else Verdict.TRANSIENT
            final = self._final(verdict, call, credentials)
            if final is not None:
                return final
            if verdict in (Verdict.AUTH, Verdict.FORBIDDEN):
                try:
                    generation, credentials = self._refresh(generation, call, deadline)
                except CredentialsUnavailable as error:
                    return call.outcome(CallResult.TRANSIENT, f"{call.last_error}; {error}")
                continue
            given_up = self._pause_before_retry(answer, verdict, call, deadline)
            if given_up is not None:
                return given_up
        return call.outcome(CallResult.TRANSIENT, call.last_error)

    def _final(
        self, verdict: Verdict, call: _CallProgress, credentials: PortkeyCredentials
    ) -> CallOutcome | None:
        """The call's outcome when this answer ends it (applied, rejected); raises for an account-level
        answer; None when it may be retried."""
        if verdict is Verdict.APPLIED:
            self._credentials.confirm(credentials)
            return call.outcome(CallResult.APPLIED)
        if verdict is Verdict.FORBIDDEN and self._credentials.accepted(credentials):
            return call.outcome(CallResult.REJECTED, f"{call.last_error} (forbidden for this update only)")
        if verdict is Verdict.REJECTED:
            return call.outcome(CallResult.REJECTED, call.last_error)
        if verdict is Verdict.ACCOUNT:
            raise AccountLimitError(account_problem(call.status, call.last_error))
        return None

    def _pause_before_retry(
        self, answer: _Answer | None, verdict: Verdict, call: _CallProgress, deadline: Deadline
    ) -> CallOutcome | None:
        """Wait before the next attempt (the server's Retry-After, or backoff); the transient outcome
        instead when attempts are used up or the wait would pass the deadline."""
        call.retry_after_s = answer.retry_after_s if answer else None
        gated = answer is not None and answer.asks_for_a_pause
        if call.budget_used >= self._max_attempts and not gated:
            return call.outcome(CallResult.TRANSIENT, call.last_error)
        contention = verdict is Verdict.CONTENTION
        wait, asked = attempt_delay(call.budget_used, call.retry_after_s, contention=contention)
        if not deadline.allows(wait + MIN_ATTEMPT_WINDOW_S):
            return call.outcome(
                CallResult.TRANSIENT,
                f"{call.last_error} (waiting {wait:.1f} s would pass the invocation deadline)",
            )
        call.retry_after_waits += asked
        if gated:  # the container's gate holds this retry with every other request
            call.rate_limited += 1
        else:
            time.sleep(wait)
        return None

    def _refresh(
        self, generation: int, call: _CallProgress, deadline: Deadline
    ) -> tuple[int, PortkeyCredentials]:
        """Credentials refused (401, or a 403 no request has shown to be thread-specific): read the
        secret again once; refused again after that is a configuration error."""
        if call.refreshed:
            raise ConfigurationError(
                f"Portkey refused the credentials (HTTP {call.status}) after refreshing the secret: "
                f"{call.last_error}"
            )
        call.refreshed = True
        return self._credentials.refresh(generation, deadline)

    @staticmethod
    def _headers(credentials: PortkeyCredentials, trace_id: str, target: Target) -> dict[str, str]:
        headers = {**credentials.headers, "Content-Type": "application/json", "x-portkey-trace-id": trace_id}
        if target.kind is TargetKind.THREAD:  # conversations are not an Assistants endpoint
            headers["OpenAI-Beta"] = "assistants=v2"
        return headers

    def _attempt(  # noqa: PLR0913 - one attempt needs all of these; grouping them would only hide that
        self,
        url: str,
        payload: bytes,
        headers: dict[str, str],
        call: _CallProgress,
        secret_values: tuple[str, ...],
        deadline: Deadline,
    ) -> _Answer | None:
        """One HTTP attempt, recorded on ``call`` with redacted text; None when no answer arrived."""
        sent_at = time.monotonic()
        try:
            answer = self._post(url, payload, headers, deadline)
        except HTTPError as error:
            self._limiter.settle(sent_at, status=None, retry_after_s=None)
            call.record(
                latency_ms=round((time.monotonic() - sent_at) * 1000, 1),
                status=None,
                trace_id=None,
                error=redact(f"{type(error).__name__}: {error}", secret_values),
                uncertain=is_uncertain(error=error),
            )
            return None
        self._limiter.settle(sent_at, status=answer.status, retry_after_s=answer.retry_after_s)
        call.record(
            latency_ms=round((time.monotonic() - sent_at) * 1000, 1),
            status=answer.status,
            trace_id=answer.trace_id,
            error=self._error_text(answer, secret_values),
            uncertain=is_uncertain(status=answer.status),
        )
        return answer

    @staticmethod
    def _error_text(answer: _Answer, secret_values: tuple[str, ...]) -> str:
        """What an answer says went wrong, redacted. A success says nothing: its body (the whole
        thread, up to 16 keys of 512 characters of metadata) is neither parsed nor searched, which keeps
        the redaction pattern's first build (tens of ms) out of a cold start that had no error and
        about half a millisecond of CPU out of every applied update."""
        if 200 <= answer.status < 300:
            return f"HTTP {answer.status}"
        return redact(f"HTTP {answer.status}: {error_message(answer.data)}", secret_values)
