"""The Portkey secret, cached per container and read from Secrets Manager within the deadline.

Hand-rolled rather than Powertools' ``SecretsProvider`` cache, which this function used before: that
cache runs each caller's fetch on its own (no sharing between concurrent workers), knows no deadline
and wraps every failure into one ``GetParameterError`` whose type no longer says whether the failure
was transient (a timeout) or permanent (the secret was deleted). The rules here:

* **Deadline first.** No Secrets Manager request starts unless its worst case (``READ_ATTEMPT_S``:
  connect plus read timeout, for the whole request even if the answer trickles in) ends before the
  deadline, and none runs past it; a transient failure is retried once
  (``aws.MAX_ATTEMPTS``) only under the same condition, which is why the retry is ours and not
  botocore's. A worker waiting for a read stops waiting at the deadline. Either way the update is
  handed back, not failed.
* **One fetch per need.** Concurrent workers that need the secret wait for the one fetch in flight
  and share its result, a failure included; a failure is also remembered for the rest of that
  invocation (identified by its deadline), so no later worker of the batch pays for it again.
* **Stale on transient failure.** When the cache has expired and Secrets Manager fails transiently
  (timeout, throttling, 5xx), the last good credentials keep being served for up to
  ``STALE_GRACE_S`` past their age, with a WARNING line; a new read is tried every
  ``STALE_RETRY_S``. A permanent failure (deleted secret, access denied, invalid value) is never
  papered over, and neither is a forced refresh after Portkey refused the cached credentials.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from thread_updater.aws import MAX_ATTEMPTS, LazyClient, worst_case_call_s
from thread_updater.credentials import PortkeyCredentials, credentials_from_secret
from thread_updater.deadline import Deadline
from thread_updater.deadline_io import bounded_by
from thread_updater.delays import secret_retry_pause
from thread_updater.errors import ConfigurationError
from thread_updater.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient

__all__ = ["READ_ATTEMPT_S", "STALE_GRACE_S", "STALE_RETRY_S", "CredentialStore", "CredentialsUnavailable"]

READ_ATTEMPT_S = worst_case_call_s(1)
"""The worst case of one GetSecretValue request (connect plus read timeout, enforced as a whole even
for an answer that trickles in: ``aws.LazyClient``): no request starts with less time than this left."""

STALE_GRACE_S = 900.0
"""How long past their cache age the last good credentials are served while Secrets Manager fails
transiently (15 minutes: long enough to ride out a regional blip, short enough that a revoked key
is not used for long)."""
STALE_RETRY_S = 30.0
"""While serving stale credentials, how often a new read is tried."""

_TRANSIENT_CODES = frozenset(
    {"ThrottlingException", "InternalServiceError", "InternalServiceErrorException", "RequestTimeout"}
)


class CredentialsUnavailable(Exception):
    """No credentials before the deadline (no time to read the secret, or the read is still running):
    the update is handed back like any other transient failure."""


class _TransientSecretError(ConfigurationError):
    """Secrets Manager failed in a way that may pass by itself (timeout, throttling, 5xx)."""


@dataclass
class _Fetch:
    """One Secrets Manager read, shared by every worker that needs it."""

    deadline: Deadline  # the deadline of the invocation that started it
    force: bool
    done: threading.Event = field(default_factory=threading.Event)
    credentials: PortkeyCredentials | None = None
    error: ConfigurationError | None = None


class CredentialStore:
    """Credentials from Secrets Manager: cached for ``max_age_s``, read at most once per need.

    ``generation`` numbers what was handed out, so when several concurrent requests see a 401
    for the same credentials only the first forces a new fetch (key rotation); the others reuse it.
    ``confirm`` records credentials Portkey accepted, which tells a forbidden update (403 while the
    same credentials work elsewhere) from refused credentials.
    """

    def __init__(self, secret_id: str, max_age_s: float) -> None:
        self._secret_id = secret_id
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        # One attempt per request: the retry is ours (``_read_within``), so it can respect the deadline.
        self._secrets_manager = LazyClient("secretsmanager", attempts=1)
        self._generation = 0
        self._current: PortkeyCredentials | None = None
        self._fetched_at = 0.0  # monotonic time of the last successful read
        self._next_read_at = 0.0  # the cache is fresh until then
        self._inflight: _Fetch | None = None
        self._failed: _Fetch | None = None  # the last failed read, shared for the rest of its invocation
        self._accepted: PortkeyCredentials | None = None

    def current(self, deadline: Deadline) -> tuple[int, PortkeyCredentials]:
        """The cached credentials, read again once their age is exceeded, and their generation.

        Raises ConfigurationError when the secret cannot be used, CredentialsUnavailable when there is
        no time left to get it.
        """
        with self._lock:
            if self._current is not None and time.monotonic() < self._next_read_at:
                return self._generation, self._current
            fetch, owner = self._join_or_start(deadline, force=False)
        return self._settle(fetch, owner, deadline)

    def refresh(self, seen_generation: int, deadline: Deadline) -> tuple[int, PortkeyCredentials]:
        """Read the secret again unless another request already did since ``seen_generation``."""
        with self._lock:
            if self._current is not None and self._generation != seen_generation:
                return self._generation, self._current
            fetch, owner = self._join_or_start(deadline, force=True)
        return self._settle(fetch, owner, deadline)

    def confirm(self, credentials: PortkeyCredentials) -> None:
        """Portkey accepted these credentials (a 2xx)."""
        with self._lock:
            self._accepted = credentials

    def accepted(self, credentials: PortkeyCredentials) -> bool:
        """Whether Portkey has accepted these very credentials for some request."""
        with self._lock:
            return self._accepted is not None and self._accepted == credentials

    def _join_or_start(self, deadline: Deadline, *, force: bool) -> tuple[_Fetch, bool]:
        """The read in flight, the failure already seen in this invocation, or a new read (owner)."""
        if self._inflight is not None:
            return self._inflight, False
        if self._failed is not None and self._failed.deadline == deadline:
            return self._failed, False
        if not deadline.allows(READ_ATTEMPT_S):
            raise CredentialsUnavailable("not enough time left in this invocation to read the secret")
        self._inflight = _Fetch(deadline=deadline, force=force)
        return self._inflight, True

    def _settle(self, fetch: _Fetch, owner: bool, deadline: Deadline) -> tuple[int, PortkeyCredentials]:
        if owner:
            self._run(fetch)
        elif not fetch.done.wait(max(0.0, deadline.remaining_s())):
            raise CredentialsUnavailable("the secret was still being read at the invocation deadline")
        if fetch.error is not None:
            raise fetch.error
        with self._lock:
            assert self._current is not None
            return self._generation, self._current

    def _run(self, fetch: _Fetch) -> None:
        """Read the secret (outside the lock), then publish the result to every waiter."""
        try:
            credentials = credentials_from_secret(self._read_within(fetch.deadline))
        except ConfigurationError as error:
            fetch.error = error
        except Exception as error:  # a read must always be settled, or its waiters would wait in vain
            fetch.error = ConfigurationError(
                f"Portkey secret {self._secret_id!r} could not be read: {type(error).__name__}"
            )
        else:
            fetch.credentials = credentials
        with self._lock:
            self._inflight = None
            now = time.monotonic()
            if fetch.credentials is not None:
                self._publish(fetch.credentials, now=now, force=fetch.force)
                self._failed = None
            elif self._serve_stale(fetch, now=now):
                fetch.error = None
            else:
                self._failed = fetch
        fetch.done.set()

    def _publish(self, credentials: PortkeyCredentials, *, now: float, force: bool) -> None:
        if force or credentials != self._current:
            self._generation += 1
        self._current = credentials
        self._fetched_at = now
        self._next_read_at = now + self._max_age_s

    def _serve_stale(self, fetch: _Fetch, *, now: float) -> bool:
        """Keep the last good credentials after a transient failure of an expiry read (see module)."""
        if fetch.force or self._current is None or not isinstance(fetch.error, _TransientSecretError):
            return False
        stale_until = self._fetched_at + self._max_age_s + STALE_GRACE_S
        if now >= stale_until:
            return False
        self._next_read_at = min(now + STALE_RETRY_S, stale_until)
        logger.warning(
            "Secrets Manager could not be read; serving the cached Portkey credentials",
            extra={
                "error": str(fetch.error),
                "credentials_age_s": round(now - self._fetched_at, 1),
                "served_stale_for_at_most_s": round(stale_until - now, 1),
                "next_read_in_s": round(self._next_read_at - now, 1),
            },
        )
        return True

    def _read_within(self, deadline: Deadline) -> object:
        """The secret, with one retry after a transient failure while a whole attempt still fits."""
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                with bounded_by(deadline.at):  # and never past the deadline, whatever the answer's pace
                    return self._read()
            except _TransientSecretError:
                pause = secret_retry_pause()
                if attempt == MAX_ATTEMPTS or not deadline.allows(pause + READ_ATTEMPT_S):
                    raise
                time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _read(self) -> object:
        """One GetSecretValue request (one attempt: ``READ_ATTEMPT_S`` at worst), decoded as JSON."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            client: SecretsManagerClient = self._secrets_manager()
            answer = client.get_secret_value(SecretId=self._secret_id)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
            kind = _TransientSecretError if code in _TRANSIENT_CODES or status >= 500 else ConfigurationError
            raise kind(f"Portkey secret {self._secret_id!r} could not be read: {error}") from None
        except BotoCoreError as error:  # connection failures and timeouts
            raise _TransientSecretError(
                f"Portkey secret {self._secret_id!r} could not be read: {type(error).__name__}: {error}"
            ) from None
        text = answer.get("SecretString")
        if text is None:
            raise ConfigurationError("Portkey secret: must be a SecretString holding JSON")
        try:
            return json.loads(text)
        except ValueError:
            raise ConfigurationError("Portkey secret: value is not valid JSON") from None
