"""Whole-exchange deadlines for HTTP requests: urllib3 and botocore only bound each socket read.

urllib3's ``Timeout`` (``total`` included) and botocore's ``read_timeout`` measure the wait for the
next bytes, not the exchange: a server that sends its headers or body one byte every half second
is never timed out (urllib3 says so in ``Timeout``'s documentation; botocore offers nothing else,
its per-request ``read_timeout`` override included). Neither has a hook that interrupts a read, so
this module adds the one thing a socket allows: shutting it down from another thread, which makes
the blocked read return at once.

``bounded_by(deadline)`` covers every request that starts inside the block, in this thread, on a
connection of a class made with ``DeadlineConnection`` (``pool_classes`` for urllib3; ``aws.py``
does the same for botocore). When the deadline passes while such a request is still being sent
or answered, one watchdog thread per process shuts its socket down (the request then fails like a
dropped connection, and ``Bound.expired`` says why); a request that would start after the
deadline is refused with ``DeadlinePassedError`` before anything is sent. The connection is
dropped, never reused half-read. Leaving the block disarms it: once ``bounded_by`` has returned, the
watchdog can no longer touch a socket the block used (a pooled connection may serve someone else).

Not covered: the DNS lookup and the TLS handshake (bounded by the connect timeout per read only).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import socket
import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError

__all__ = [
    "Bound",
    "DeadlineConnection",
    "DeadlinePassedError",
    "bounded_by",
    "current_deadline",
    "pool_classes",
]


class DeadlinePassedError(ConnectTimeoutError):
    """A request was about to start after its deadline: nothing was sent."""


class Bound:
    """One ``bounded_by`` block: when it ends, and whether the watchdog had to cut an exchange."""

    def __init__(self, at: float) -> None:
        self.at = at
        self.expired = False  # set (under the watchdog's lock) once the deadline passed while armed
        self.armed = True
        self.connections: list[Any] = []  # the connections its requests used, in order

    def remaining(self) -> float:
        return self.at - time.monotonic()


_CURRENT: ContextVar[Bound | None] = ContextVar("thread_updater_deadline", default=None)
_OWNER = "_thread_updater_deadline"  # the attribute naming the Bound a connection is working for


class _Watchdog:
    """One daemon thread that shuts down the sockets of deadlines that pass while still armed."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Bound]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None

    def arm(self, deadline: Bound) -> None:
        with self._cond:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="deadline-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()

    def disarm(self, deadline: Bound) -> None:
        """After this returns, the watchdog never acts for ``deadline`` (its entry is dropped lazily)."""
        with self._cond:
            deadline.armed = False

    def adopt(self, deadline: Bound, connection: Any) -> None:
        """``connection`` starts a request for ``deadline``; refused when the deadline has passed."""
        with self._cond:
            if deadline.expired or deadline.remaining() <= 0:
                deadline.expired = True
                raise DeadlinePassedError(connection, "the deadline passed before the request started")
            setattr(connection, _OWNER, deadline)
            deadline.connections.append(connection)

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and not self._heap[0][2].armed:
                    heapq.heappop(self._heap)
                if not self._heap:
                    self._cond.wait()
                    continue
                wait = self._heap[0][0] - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                _, _, deadline = heapq.heappop(self._heap)
                deadline.expired = True
                for connection in deadline.connections:
                    if getattr(connection, _OWNER, None) is deadline:  # not since taken by another request
                        _shut_down(getattr(connection, "sock", None))


def _shut_down(sock: Any) -> None:
    """Shut the socket down both ways: a read blocked on it in another thread returns at once.

    ``socket.socket.shutdown`` even for a TLS socket: ``SSLSocket.shutdown`` would also drop the TLS
    object under the reader's feet."""
    raw = sock if isinstance(sock, socket.socket) else getattr(sock, "socket", None)  # TLS in TLS
    if isinstance(raw, socket.socket):
        with contextlib.suppress(OSError):
            socket.socket.shutdown(raw, socket.SHUT_RDWR)


_WATCHDOG = _Watchdog()


@contextlib.contextmanager
def bounded_by(at: float) -> Iterator[Bound]:
    """Requests started in this block (this thread) end by ``at`` (``time.monotonic()``), or by an
    enclosing block's deadline if that is earlier."""
    outer = _CURRENT.get()
    deadline = Bound(min(at, outer.at) if outer is not None else at)
    _WATCHDOG.arm(deadline)
    token = _CURRENT.set(deadline)
    try:
        yield deadline
    finally:
        _CURRENT.reset(token)
        _WATCHDOG.disarm(deadline)


def current_deadline() -> Bound | None:
    """The innermost ``bounded_by`` block this thread is in, if any."""
    return _CURRENT.get()


class DeadlineConnection:
    """Mixin for an urllib3 connection class (before it in the bases): its requests obey ``bounded_by``."""

    def request(self, *args: Any, **kwargs: Any) -> None:
        deadline = _CURRENT.get()
        if deadline is None:
            setattr(self, _OWNER, None)
        else:
            _WATCHDOG.adopt(deadline, self)
        super().request(*args, **kwargs)  # type: ignore[misc]


class _HTTPConnection(DeadlineConnection, HTTPConnection):
    pass


class _HTTPSConnection(DeadlineConnection, HTTPSConnection):
    pass


class _HTTPConnectionPool(HTTPConnectionPool):
    ConnectionCls = _HTTPConnection


class _HTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = _HTTPSConnection


def pool_classes() -> dict[str, type[HTTPConnectionPool]]:
    """``PoolManager.pool_classes_by_scheme`` for connections that obey ``bounded_by``."""
    return {"http": _HTTPConnectionPool, "https": _HTTPSConnectionPool}
