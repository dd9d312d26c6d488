"""Fault scripting: what the stand-in answers instead of its normal behaviour, per thread.

A :class:`Reply` describes one scripted answer (status, body, headers, held, slow, dropped);
:class:`ScriptBook` queues them per thread; :func:`wait_for_release` and :func:`scripted_answer`
turn one into the bytes to send.
"""

from __future__ import annotations

import json
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from devstack.standin.store import Answer, ApiError, ThreadStore, default_error, validate_update

DropMode = Literal["before_response", "mid_response"]

DEFAULT_HOLD_TIMEOUT = 10.0
"""Seconds a held reply waits for its event before answering anyway."""

_HOLD_POLL_SECONDS = 0.02
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(frozen=True)
class Reply:
    """One scripted behaviour for one request (see :meth:`PortkeyStandIn.script`).

    ``body=None`` means the default body for ``status``: the ThreadObject (after applying the
    update) for 2xx, an OpenAI-style error object otherwise. ``str``/``bytes`` bodies are sent
    verbatim (``Content-Type: application/json`` unless ``headers`` says otherwise).

    ``apply`` decides whether the request's update is written to the store; by default it is
    for 2xx replies, except with ``drop="before_response"`` (the request "never got through").
    ``hold`` blocks the answer until the event is set (bounded by the stand-in's
    ``hold_timeout``); ``delay`` then waits that many seconds. ``stop()`` cuts both short, and
    such a request is dropped rather than answered. ``drop="mid_response"`` sends the status
    line, headers and half the body under a larger ``Content-Length``, then closes.
    """

    status: int = 200
    body: bytes | str | dict[str, Any] | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    hold: threading.Event | None = None
    delay: float = 0.0
    drop: DropMode | None = None
    apply: bool | None = None
    drip: float = 0.0
    """Seconds between body bytes: a server that answers, but too slowly to ever finish in time."""
    drip_headers: float = 0.0
    """Seconds between the bytes of the headers, after a status line sent at once: an answer that
    never gets past its headers in time (each byte arrives well within any read timeout)."""
    echo_headers: bool = False
    """Append the request's headers to the default error message, as some custom hosts and providers
    do: credentials come back in the answer (what redaction in the function must remove)."""

    def __post_init__(self) -> None:
        """Reject impossible replies early, in the test that builds them."""
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be 100..599, got {self.status}")
        if self.delay < 0 or self.drip < 0 or self.drip_headers < 0:
            raise ValueError(
                "delay, drip and drip_headers must be >= 0, "
                f"got {self.delay}, {self.drip}, {self.drip_headers}"
            )
        if self.drop not in (None, "before_response", "mid_response"):
            raise ValueError(f"drop must be None, 'before_response' or 'mid_response', got {self.drop!r}")
        if self.body is not None and not isinstance(self.body, bytes | str | dict):
            raise TypeError(f"body must be bytes, str, dict or None, got {type(self.body).__name__}")

    @property
    def applies_update(self) -> bool:
        """Whether this reply writes the request's update to the store."""
        if self.apply is not None:
            return self.apply
        return 200 <= self.status < 300 and self.drop != "before_response"


class ScriptBook:
    """The scripted replies waiting for requests, per thread (``None``: any thread).

    ``lock`` is the stand-in's own, so a reset clears threads, scripts and records at once.
    """

    def __init__(self, lock: threading.Condition) -> None:
        self._lock = lock
        self._scripts: dict[str | None, deque[Reply]] = {}
        self._always: dict[str, Reply] = {}

    def script(self, thread_id: str | None, replies: tuple[Reply, ...]) -> None:
        """Queue ``replies``, one per request to ``thread_id``."""
        with self._lock:
            self._scripts.setdefault(thread_id, deque()).extend(replies)

    def always(self, thread_id: str, reply: Reply) -> None:
        """Answer every request to ``thread_id`` with ``reply`` (after its own queue)."""
        with self._lock:
            self._always[thread_id] = reply

    def forget_always(self, thread_id: str) -> None:
        """Undo :meth:`always` for ``thread_id``."""
        with self._lock:
            self._always.pop(thread_id, None)

    def pending(self, thread_id: str | None) -> int:
        """How many queued (not yet consumed) replies remain for ``thread_id``."""
        with self._lock:
            return len(self._scripts.get(thread_id, ()))

    def next_reply(self, thread_id: str | None) -> Reply | None:
        """The reply for the next request to ``thread_id``: its queue, its always, then any-thread."""
        if thread_id is None:
            return None
        with self._lock:
            queue = self._scripts.get(thread_id)
            if queue:
                return queue.popleft()
            if thread_id in self._always:
                return self._always[thread_id]
            queue = self._scripts.get(None)
            if queue:
                return queue.popleft()
        return None

    def clear(self) -> None:
        """Forget every queued and always reply."""
        with self._lock:
            self._scripts.clear()
            self._always.clear()


def wait_for_release(reply: Reply, *, stopping: threading.Event, hold_timeout: float) -> bool:
    """Honour ``hold`` and ``delay``; False when ``stopping`` interrupted the wait."""
    if reply.hold is not None:
        deadline = time.monotonic() + hold_timeout
        while not reply.hold.wait(_HOLD_POLL_SECONDS):
            if stopping.is_set():
                return False
            if time.monotonic() >= deadline:
                break
    if reply.delay > 0 and stopping.wait(reply.delay):
        return False
    return not stopping.is_set()


def scripted_answer(
    reply: Reply,
    *,
    method: str,
    thread_id: str | None,
    parsed: Any,
    store: ThreadStore,
    headers: Mapping[str, str],
) -> Answer:
    """The answer ``reply`` scripts for this request, applying its update to ``store`` if it says so."""
    if reply.status in _NO_BODY_STATUSES or reply.status < 200:
        body_obj: Any = None
    elif reply.body is not None:
        body_obj = reply.body
    else:
        body_obj = None if 200 <= reply.status < 300 else default_error(reply.status)
    if reply.echo_headers and isinstance(body_obj, dict) and isinstance(body_obj.get("error"), dict):
        echoed = json.dumps(dict(headers), sort_keys=True)
        body_obj["error"]["message"] = f"{body_obj['error']['message']} Request headers: {echoed}"

    thread_object: dict[str, Any] | None = None
    if thread_id is not None and (reply.applies_update or body_obj is None):
        thread_object = _thread_after(reply, method=method, thread_id=thread_id, parsed=parsed, store=store)

    if body_obj is None and 200 <= reply.status < 300 and reply.status not in _NO_BODY_STATUSES:
        body_obj = thread_object
    if body_obj is None:
        payload = b""
    elif isinstance(body_obj, bytes):
        payload = body_obj
    elif isinstance(body_obj, str):
        payload = body_obj.encode("utf-8")
    else:
        payload = json.dumps(body_obj).encode("utf-8")
    return Answer(reply.status, payload, dict(reply.headers))


def _thread_after(
    reply: Reply, *, method: str, thread_id: str, parsed: Any, store: ThreadStore
) -> dict[str, Any]:
    """The thread as the scripted answer shows it; stored first when the reply applies the update."""
    update: dict[str, Any] = {}
    if method == "POST":
        try:
            update = validate_update(parsed)
        except ApiError:
            update = {}
    if reply.applies_update and method == "POST":
        try:
            applied = store.apply(thread_id, update)
        except ApiError:  # the upstream refuses it (too many keys once merged): nothing written
            return store.preview(thread_id, {})
        assert applied is not None  # create=True always yields the thread
        return applied
    return store.preview(thread_id, update)
