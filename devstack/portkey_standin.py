"""A local HTTP stand-in for Portkey's Modify Thread endpoint (Assistants API v2 thread store).

It answers ``POST {prefix}/threads/{id}`` (modify thread) and ``GET {prefix}/threads/{id}``
(retrieve thread) like Portkey / OpenAI do, keeps threads in memory, records every request,
and can be scripted per request (status, body, headers, slow, dropped connections) so that
tests can drive retries, timeouts and concurrency deterministically.

Two ways of being reached:

* directly, as Portkey (``url`` = ``http://127.0.0.1:PORT/v1``): requests carry
  ``x-portkey-api-key`` plus routing headers;
* behind the open-source Portkey gateway as a *custom host* (``custom_host = url``): the
  gateway strips ``x-portkey-*`` headers and forwards ``Authorization: Bearer <provider key>``
  to ``{custom_host}/threads/{id}``.

Standard library only. Run standalone with ``python -m devstack.portkey_standin --port 0``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import json
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from types import FrameType, TracebackType
from typing import Any, Literal, NamedTuple, cast
from urllib.parse import unquote

from devstack.loopback_http import LoopbackHTTPServer

__all__ = ["DropMode", "PortkeyStandIn", "RecordedRequest", "Reply", "main"]

DropMode = Literal["before_response", "mid_response"]

DEFAULT_HOLD_TIMEOUT = 10.0
"""Seconds a held reply waits for its event before answering anyway."""

TRACE_ID_HEADER = "x-portkey-trace-id"
API_KEY_HEADER = "x-portkey-api-key"
BETA_HEADER_VALUE = "assistants=v2"

_UPDATE_FIELDS = ("metadata", "tool_resources")
_METADATA_MAX_PAIRS = 16
_METADATA_KEY_MAX = 64
_METADATA_VALUE_MAX = 512
_TOOL_RESOURCE_LISTS = {
    "code_interpreter": ("file_ids", 20),
    "file_search": ("vector_store_ids", 1),
}
_HOLD_POLL_SECONDS = 0.02
_STOP_JOIN_SECONDS = 1.0
_NO_BODY_STATUSES = frozenset({204, 304})

_DEFAULT_ERRORS: dict[int, tuple[str, str, str | None]] = {
    400: ("Bad request.", "invalid_request_error", None),
    401: ("Incorrect API key provided.", "invalid_request_error", "invalid_api_key"),
    403: ("You are not allowed to access this resource.", "permission_error", None),
    404: ("Not found.", "invalid_request_error", None),
    409: ("Another request is modifying this thread.", "invalid_request_error", "conflict"),
    429: ("Rate limit reached for requests.", "requests", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request.", "server_error", None),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}


# --------------------------------------------------------------------------- public types


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
    echo_headers: bool = False
    """Append the request's headers to the default error message, as some custom hosts and providers
    do: credentials come back in the answer (what redaction in the function must remove)."""

    def __post_init__(self) -> None:
        """Reject impossible replies early, in the test that builds them."""
        if not 100 <= self.status <= 599:
            raise ValueError(f"status must be 100..599, got {self.status}")
        if self.delay < 0 or self.drip < 0:
            raise ValueError(f"delay and drip must be >= 0, got {self.delay}, {self.drip}")
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


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the stand-in saw it, and what it answered (``status == 0``: dropped)."""

    method: str
    path: str
    """Raw request target exactly as received (not percent-decoded, query string included)."""
    thread_id: str | None
    """Decoded thread id when ``path`` is a thread endpoint, else ``None``."""
    headers: dict[str, str]
    """Header names lower-cased; repeated headers joined with ``", "``."""
    body: bytes
    json: Any | None
    status: int
    arrived_at: float
    """``time.monotonic()`` when the request's headers had been read."""
    sequence: int
    """Arrival order since the last start/reset, from 0."""


# --------------------------------------------------------------------------- internals


class _ApiError(Exception):
    """An OpenAI-style error answer."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type_: str = "invalid_request_error",
        param: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type_ = type_
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON error envelope."""
        return {
            "error": {"message": self.message, "type": self.type_, "param": self.param, "code": self.code}
        }


class _Answer(NamedTuple):
    status: int
    body: bytes
    headers: dict[str, str]


@dataclass
class _Exchange:
    """One request while it is being handled."""

    generation: int
    sequence: int
    arrived_at: float
    method: str
    path: str
    thread_id: str | None
    headers: dict[str, str]
    body: bytes = b""
    parsed: Any | None = None
    finished: bool = False
    record: RecordedRequest | None = None


class _BodyError(Exception):
    """The request body could not be read (bad framing or the client went away)."""


def _default_error(status: int) -> dict[str, Any]:
    message, type_, code = _DEFAULT_ERRORS.get(status, ("", "server_error", None))
    if not message:
        try:
            message = HTTPStatus(status).phrase + "."
        except ValueError:
            message = f"HTTP {status}."
        type_ = "invalid_request_error" if status < 500 else "server_error"
    return _ApiError(status, message, type_=type_, code=code).body()


def _json_type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def _invalid_type(param: str, expected: str, value: Any) -> _ApiError:
    return _ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {_json_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def _validate_metadata(metadata: Any) -> None:
    if metadata is None:
        return
    if not isinstance(metadata, dict):
        raise _invalid_type("metadata", "an object", metadata)
    if len(metadata) > _METADATA_MAX_PAIRS:
        raise _ApiError(
            400,
            f"Invalid 'metadata': too many properties. Expected an object with at most "
            f"{_METADATA_MAX_PAIRS} properties, but got an object with {len(metadata)} properties instead.",
            param="metadata",
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        if len(key) > _METADATA_KEY_MAX:
            raise _ApiError(
                400,
                f"Invalid 'metadata': key too long. Expected keys with maximum length "
                f"{_METADATA_KEY_MAX}, but got a key with length {len(key)} instead.",
                param="metadata",
                code="string_above_max_length",
            )
        if not isinstance(value, str):
            raise _invalid_type(f"metadata.{key}", "a string", value)
        if len(value) > _METADATA_VALUE_MAX:
            raise _ApiError(
                400,
                f"Invalid 'metadata.{key}': string too long. Expected a string with maximum length "
                f"{_METADATA_VALUE_MAX}, but got a string with length {len(value)} instead.",
                param=f"metadata.{key}",
                code="string_above_max_length",
            )


def _validate_tool_resources(tool_resources: Any) -> None:
    if tool_resources is None:
        return
    if not isinstance(tool_resources, dict):
        raise _invalid_type("tool_resources", "an object", tool_resources)
    for tool, resources in tool_resources.items():
        if tool not in _TOOL_RESOURCE_LISTS:
            raise _ApiError(
                400, f"Unrecognized request argument supplied: tool_resources.{tool}", param="tool_resources"
            )
        param = f"tool_resources.{tool}"
        if not isinstance(resources, dict):  # null too: only tool_resources itself may be null
            raise _invalid_type(param, "an object", resources)
        list_name, max_items = _TOOL_RESOURCE_LISTS[tool]
        for name, ids in resources.items():
            if name != list_name:
                raise _ApiError(400, f"Unrecognized request argument supplied: {param}.{name}", param=param)
            if not isinstance(ids, list) or not all(isinstance(item, str) for item in ids):
                raise _invalid_type(f"{param}.{name}", "an array of strings", ids)
            if len(ids) > max_items:
                raise _ApiError(
                    400,
                    f"Invalid '{param}.{name}': array too long. Expected an array with maximum length "
                    f"{max_items}, but got an array with length {len(ids)} instead.",
                    param=f"{param}.{name}",
                    code="array_above_max_length",
                )


def _validate_update(payload: Any) -> dict[str, Any]:
    """Check a Modify Thread body; return it as the update to apply."""
    if not isinstance(payload, dict):
        raise _ApiError(
            400, f"Invalid type for 'body': expected an object, but got {_json_type_name(payload)}."
        )
    unknown = [name for name in payload if name not in _UPDATE_FIELDS]
    if len(unknown) == 1:
        raise _ApiError(400, f"Unrecognized request argument supplied: {unknown[0]}")
    if unknown:
        raise _ApiError(400, f"Unrecognized request arguments supplied: {', '.join(unknown)}")
    _validate_metadata(payload.get("metadata"))
    _validate_tool_resources(payload.get("tool_resources"))
    return payload


def _parse_json(body: bytes) -> Any:
    def reject_constant(name: str) -> Any:
        raise ValueError(f"invalid JSON constant {name}")

    return json.loads(body.decode("utf-8"), parse_constant=reject_constant)


def _read_chunked(rfile: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = rfile.readline(65537)
        if not line:
            raise _BodyError("truncated chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise _BodyError("bad chunk size") from exc
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers are ignored
            return b"".join(chunks)
        data = rfile.read(size)
        if len(data) < size:
            raise _BodyError("truncated chunk")
        chunks.append(data)
        rfile.readline(65537)  # CRLF after the chunk


def _normalize_prefix(prefix: str) -> str:
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


# --------------------------------------------------------------------------- HTTP plumbing


class _Server(LoopbackHTTPServer):
    def __init__(self, address: tuple[str, int], standin: PortkeyStandIn) -> None:
        self.standin = standin
        super().__init__(address, _Handler)

    def report_error(self, text: str) -> None:
        self.standin._note_error(text)  # a bug in the stand-in: the tests' fixture asserts none


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PortkeyStandIn/1.0"

    def version_string(self) -> str:
        return self.server_version

    @property
    def standin(self) -> PortkeyStandIn:
        return cast(_Server, self.server).standin

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without this, Nagle + delayed ACK add ~40 ms
        # to every answer on a reused (keep-alive) connection.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.standin._register_connection(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.standin._unregister_connection(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read records, not stderr."""

    def do_GET(self) -> None:
        self.standin._serve(self)

    def do_POST(self) -> None:
        self.standin._serve(self)

    def do_PUT(self) -> None:
        self.standin._serve(self)

    def do_PATCH(self) -> None:
        self.standin._serve(self)

    def do_DELETE(self) -> None:
        self.standin._serve(self)

    def do_OPTIONS(self) -> None:
        self.standin._serve(self)


# --------------------------------------------------------------------------- the stand-in


class PortkeyStandIn:
    """In-memory Portkey / Assistants thread store over HTTP, scriptable per request.

    Scripted replies are consumed in this order for a request to thread ``T``: the queue
    ``script(T, ...)``, then ``always(T, ...)``, then the any-thread queue ``script(None, ...)``;
    otherwise the request gets the normal behaviour. Only thread endpoints consume scripts.

    A request is recorded, and leaves the in-flight count, just before the first byte of its
    answer is sent: once a client has its response, :meth:`recorded` already shows it.
    """

    def __init__(
        self,
        *,
        prefix: str = "/v1",
        api_keys: Iterable[str] | None = None,
        auth_tokens: Iterable[str] | None = None,
        require_beta_header: bool = True,
        auto_create: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        hold_timeout: float = DEFAULT_HOLD_TIMEOUT,
    ) -> None:
        """Configure; nothing listens until :meth:`start`.

        ``api_keys``: if given, ``x-portkey-api-key`` must be one of them. ``auth_tokens``: if
        given, a request carrying ``Authorization`` must carry ``Bearer <one of them>``. A request
        with neither header is always 401. ``port=0`` lets the OS pick a free port.
        """
        self.prefix = _normalize_prefix(prefix)
        self.require_beta_header = require_beta_header
        self.auto_create = auto_create
        self.host = host
        self.hold_timeout = hold_timeout
        self._requested_port = port

        self._cond = threading.Condition(threading.RLock())
        self._api_keys: frozenset[str] | None = None if api_keys is None else frozenset(api_keys)
        self._auth_tokens: frozenset[str] | None = None if auth_tokens is None else frozenset(auth_tokens)
        self._threads: dict[str, dict[str, Any]] = {}
        self._scripts: dict[str | None, deque[Reply]] = {}
        self._always: dict[str, Reply] = {}
        self._records: list[RecordedRequest] = []
        self._errors: list[str] = []
        self._generation = 0
        self._next_sequence = 0
        self._arrived = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._connections_opened = 0
        self._connections: dict[socket.socket, threading.Thread] = {}

        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PortkeyStandIn:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("PortkeyStandIn is already running")
        self._stopping.clear()
        server = _Server((self.host, self._requested_port), self)
        wake = socket.socketpair()
        thread = threading.Thread(
            target=_accept_loop,
            args=(server, wake[0]),
            name=f"portkey-standin:{server.server_port}",
            daemon=True,
        )
        self._server, self._serve_thread, self._wake = server, thread, wake
        thread.start()
        return self

    def stop(self) -> None:
        """Stop serving: release held/delayed replies (they are dropped), close every socket.

        Idempotent and quick (well under a second) even with requests pending.
        """
        server, serve_thread, wake = self._server, self._serve_thread, self._wake
        if server is None or serve_thread is None or wake is None:
            return
        with self._cond:
            self._stopping.set()
            connections = list(self._connections.items())
            self._cond.notify_all()
        with contextlib.suppress(OSError):
            wake[1].send(b"x")
        serve_thread.join(timeout=_STOP_JOIN_SECONDS)
        server.server_close()
        for end in wake:
            end.close()
        for sock, _ in connections:
            _shutdown_socket(sock)
        deadline = time.monotonic() + _STOP_JOIN_SECONDS
        for _, handler_thread in connections:
            if handler_thread is not threading.current_thread():
                handler_thread.join(timeout=max(0.0, deadline - time.monotonic()))
        self._server = self._serve_thread = self._wake = None

    def __enter__(self) -> PortkeyStandIn:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the server is started and not stopped."""
        return self._server is not None

    @property
    def port(self) -> int:
        """The bound port (only while running)."""
        if self._server is None:
            raise RuntimeError("PortkeyStandIn is not running; call start() first")
        return self._server.server_port

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT``, without the prefix."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """``http://HOST:PORT{prefix}``: the Portkey base URL, and the gateway ``custom_host``."""
        return self.root_url + self.prefix

    # ------------------------------------------------------------------ configuration

    def set_api_keys(self, api_keys: Iterable[str] | None) -> None:
        """Replace the accepted ``x-portkey-api-key`` values (``None``: accept any); key rotation."""
        with self._cond:
            self._api_keys = None if api_keys is None else frozenset(api_keys)

    def set_auth_tokens(self, auth_tokens: Iterable[str] | None) -> None:
        """Replace the accepted ``Authorization: Bearer`` tokens (``None``: accept any)."""
        with self._cond:
            self._auth_tokens = None if auth_tokens is None else frozenset(auth_tokens)

    def script(self, thread_id: str | None, *replies: Reply) -> None:
        """Queue replies for requests to ``thread_id`` (``None``: any thread); one per request."""
        with self._cond:
            self._scripts.setdefault(thread_id, deque()).extend(replies)

    def always(self, thread_id: str, reply: Reply) -> None:
        """Answer every request to ``thread_id`` with ``reply`` (after its own script queue)."""
        with self._cond:
            self._always[thread_id] = reply

    def forget_always(self, thread_id: str) -> None:
        """Undo :meth:`always` for ``thread_id``."""
        with self._cond:
            self._always.pop(thread_id, None)

    def pending_scripts(self, thread_id: str | None) -> int:
        """How many queued (not yet consumed) replies remain for ``thread_id``."""
        with self._cond:
            return len(self._scripts.get(thread_id, ()))

    def seed(
        self,
        thread_id: str,
        metadata: dict[str, Any] | None = None,
        tool_resources: dict[str, Any] | None = None,
    ) -> None:
        """Create or overwrite a stored thread (``None`` fields start as ``{}`` like a new thread)."""
        thread = self._new_thread(thread_id)
        thread["metadata"] = copy.deepcopy(metadata) if metadata is not None else {}
        thread["tool_resources"] = copy.deepcopy(tool_resources) if tool_resources is not None else {}
        with self._cond:
            self._threads[thread_id] = thread

    def thread(self, thread_id: str) -> dict[str, Any] | None:
        """A copy of the stored ThreadObject, or ``None``."""
        with self._cond:
            stored = self._threads.get(thread_id)
            return copy.deepcopy(stored) if stored is not None else None

    def reset(self) -> None:
        """Forget scripts, records, counters and threads (requests still in flight are not recorded)."""
        with self._cond:
            self._threads.clear()
            self._scripts.clear()
            self._always.clear()
            self._records.clear()
            self._errors.clear()
            self._generation += 1
            self._next_sequence = 0
            self._arrived = 0
            self._max_in_flight = self._in_flight
            self._connections_opened = 0
            self._cond.notify_all()

    # ------------------------------------------------------------------ observation

    def recorded(self) -> list[RecordedRequest]:
        """Snapshot of answered (or dropped) requests, in arrival order."""
        with self._cond:
            return sorted(self._records, key=lambda record: record.sequence)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Same as :meth:`recorded`."""
        return self.recorded()

    def requests_for(self, thread_id: str) -> list[RecordedRequest]:
        """Recorded requests to one thread, in arrival order."""
        return [record for record in self.recorded() if record.thread_id == thread_id]

    def errors(self) -> list[str]:
        """Tracebacks of unexpected failures inside the stand-in (should stay empty)."""
        with self._cond:
            return list(self._errors)

    @property
    def arrived(self) -> int:
        """Requests whose headers have been read (answered or not)."""
        with self._cond:
            return self._arrived

    @property
    def in_flight(self) -> int:
        """Requests currently being handled."""
        with self._cond:
            return self._in_flight

    @property
    def max_in_flight(self) -> int:
        """Highest number of requests handled at the same time."""
        with self._cond:
            return self._max_in_flight

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted."""
        with self._cond:
            return self._connections_opened

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
        """Wait (bounded) until ``predicate()`` is true; re-checked on every request event."""
        with self._cond:
            return self._cond.wait_for(predicate, timeout=timeout)

    def wait_for_arrivals(self, count: int, timeout: float = 5.0) -> bool:
        """Wait (bounded) until at least ``count`` requests have arrived."""
        return self.wait_for(lambda: self._arrived >= count, timeout)

    def wait_for_in_flight(self, count: int, timeout: float = 5.0) -> bool:
        """Wait (bounded) until at least ``count`` requests are in flight at once."""
        return self.wait_for(lambda: self._in_flight >= count, timeout)

    # ------------------------------------------------------------------ request handling

    def _note_error(self, text: str) -> None:
        with self._cond:
            self._errors.append(text)

    def _register_connection(self, sock: socket.socket) -> None:
        with self._cond:
            self._connections_opened += 1
            self._connections[sock] = threading.current_thread()
            stopping = self._stopping.is_set()
            self._cond.notify_all()
        if stopping:
            _shutdown_socket(sock)

    def _unregister_connection(self, sock: socket.socket) -> None:
        with self._cond:
            self._connections.pop(sock, None)

    def _thread_id_for(self, raw_path: str) -> str | None:
        path = raw_path.split("?", 1)[0]
        base = f"{self.prefix}/threads/"
        if not path.startswith(base):
            return None
        segment = path[len(base) :]
        if not segment or "/" in segment:
            return None
        return unquote(segment)

    def _next_reply(self, thread_id: str | None) -> Reply | None:
        if thread_id is None:
            return None
        with self._cond:
            queue = self._scripts.get(thread_id)
            if queue:
                return queue.popleft()
            if thread_id in self._always:
                return self._always[thread_id]
            queue = self._scripts.get(None)
            if queue:
                return queue.popleft()
        return None

    def _serve(self, handler: _Handler) -> None:
        arrived_at = time.monotonic()
        with self._cond:
            generation = self._generation
            sequence = self._next_sequence
            self._next_sequence += 1
            self._arrived += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._cond.notify_all()

        headers: dict[str, str] = {}
        for name, value in handler.headers.items():
            key = name.lower()
            headers[key] = f"{headers[key]}, {value}" if key in headers else str(value)
        exchange = _Exchange(
            generation=generation,
            sequence=sequence,
            arrived_at=arrived_at,
            method=handler.command,
            path=handler.path,
            thread_id=self._thread_id_for(handler.path),
            headers=headers,
        )
        try:
            try:
                exchange.body = self._read_body(handler, headers)
            except _BodyError:
                handler.close_connection = True
                error = _ApiError(400, "Could not read the request body.")
                self._write(handler, exchange, self._error_answer(error))
                return
            if exchange.body:
                try:
                    exchange.parsed = _parse_json(exchange.body)
                except ValueError:
                    exchange.parsed = None
            self._answer(handler, exchange)
        except Exception:
            self._note_error(traceback.format_exc())
            handler.close_connection = True
        finally:
            self._finish(exchange, 0)  # no-op unless nothing was answered

    def _finish(self, exchange: _Exchange, status: int) -> None:
        """Record the exchange and leave the in-flight count, once, before the client sees bytes."""
        if exchange.finished:
            return
        exchange.finished = True
        record = RecordedRequest(
            method=exchange.method,
            path=exchange.path,
            thread_id=exchange.thread_id,
            headers=exchange.headers,
            body=exchange.body,
            json=exchange.parsed,
            status=status,
            arrived_at=exchange.arrived_at,
            sequence=exchange.sequence,
        )
        with self._cond:
            self._in_flight -= 1
            if exchange.generation == self._generation:
                self._records.append(record)
                exchange.record = record
            self._cond.notify_all()

    def _mark_dropped(self, exchange: _Exchange) -> None:
        """The answer could not be written after all: record status 0."""
        if not exchange.finished:
            self._finish(exchange, 0)
            return
        with self._cond:
            for index, record in enumerate(self._records):
                if record is exchange.record:
                    self._records[index] = exchange.record = dataclasses.replace(record, status=0)
                    break
            self._cond.notify_all()

    @staticmethod
    def _read_body(handler: _Handler, headers: Mapping[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return _read_chunked(handler.rfile)
        length_text = headers.get("content-length")
        if length_text is None:
            return b""
        try:
            length = int(length_text)
        except ValueError as exc:
            raise _BodyError("bad Content-Length") from exc
        if length < 0:
            raise _BodyError("negative Content-Length")
        body = handler.rfile.read(length) if length else b""
        if len(body) < length:
            raise _BodyError("truncated body")
        return body

    def _answer(self, handler: _Handler, exchange: _Exchange) -> None:
        """Produce and send the answer: scripted if a reply is queued, else the normal behaviour."""
        reply = self._next_reply(exchange.thread_id)
        if reply is None:
            try:
                answer = self._normal(exchange)
            except _ApiError as error:
                answer = self._error_answer(error)
            self._write(handler, exchange, answer)
            return
        if not self._wait_for_release(reply):
            handler.close_connection = True  # stopping: drop it
            return
        self._write(handler, exchange, self._scripted(reply, exchange), drop=reply.drop, drip=reply.drip)

    def _wait_for_release(self, reply: Reply) -> bool:
        """Honour ``hold`` and ``delay``; False when stop() interrupted the wait."""
        if reply.hold is not None:
            deadline = time.monotonic() + self.hold_timeout
            while not reply.hold.wait(_HOLD_POLL_SECONDS):
                if self._stopping.is_set():
                    return False
                if time.monotonic() >= deadline:
                    break
        if reply.delay > 0 and self._stopping.wait(reply.delay):
            return False
        return not self._stopping.is_set()

    def _scripted(self, reply: Reply, exchange: _Exchange) -> _Answer:
        method, thread_id, parsed = exchange.method, exchange.thread_id, exchange.parsed
        headers = dict(reply.headers)
        if reply.status in _NO_BODY_STATUSES or reply.status < 200:
            body_obj: Any = None
        elif reply.body is not None:
            body_obj = reply.body
        else:
            body_obj = None if 200 <= reply.status < 300 else _default_error(reply.status)
        if reply.echo_headers and isinstance(body_obj, dict) and isinstance(body_obj.get("error"), dict):
            echoed = json.dumps(exchange.headers, sort_keys=True)
            body_obj["error"]["message"] = f"{body_obj['error']['message']} Request headers: {echoed}"

        thread_object: dict[str, Any] | None = None
        if thread_id is not None and (reply.applies_update or body_obj is None):
            update: dict[str, Any] = {}
            if method == "POST":
                try:
                    update = _validate_update(parsed)
                except _ApiError:
                    update = {}
            with self._cond:
                if reply.applies_update and method == "POST":
                    stored = self._threads.get(thread_id) or self._new_thread(thread_id)
                    stored.update(copy.deepcopy(update))
                    self._threads[thread_id] = stored
                    thread_object = copy.deepcopy(stored)
                elif thread_id in self._threads:
                    thread_object = copy.deepcopy(self._threads[thread_id])
                else:
                    thread_object = self._new_thread(thread_id)
                    thread_object.update(copy.deepcopy(update))

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
        return _Answer(reply.status, payload, headers)

    def _normal(self, exchange: _Exchange) -> _Answer:
        method, raw_path, thread_id = exchange.method, exchange.path, exchange.thread_id
        headers, parsed, body = exchange.headers, exchange.parsed, exchange.body
        self._check_auth(headers)
        if thread_id is None or method not in ("GET", "POST"):
            raise _ApiError(404, f"Invalid URL ({method} {raw_path.split('?', 1)[0]})")
        if self.require_beta_header:
            beta = [part.strip() for part in headers.get("openai-beta", "").split(",")]
            if BETA_HEADER_VALUE not in beta:
                raise _ApiError(
                    400,
                    "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
                    "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
                    code="missing_beta_header",
                )
        if method == "GET":
            found = self.thread(thread_id)
            if found is None:
                raise self._not_found(thread_id)
            return _Answer(200, json.dumps(found).encode("utf-8"), {})

        media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if media_type != "application/json" and not media_type.endswith("+json"):
            raise _ApiError(
                400,
                f"Invalid Content-Type header ({headers.get('content-type', '')!r}), "
                "expected application/json.",
                code="invalid_content_type",
            )
        if parsed is None and body.strip() != b"null":
            raise _ApiError(
                400,
                "We could not parse the JSON body of your request. "
                "(HINT: The API expects a JSON payload, but what was sent was not valid JSON.)",
            )
        update = _validate_update(parsed)
        with self._cond:
            stored = self._threads.get(thread_id)
            if stored is None:
                if not self.auto_create:
                    raise self._not_found(thread_id)
                stored = self._new_thread(thread_id)
                self._threads[thread_id] = stored
            stored.update(copy.deepcopy(update))
            payload = json.dumps(stored).encode("utf-8")
        return _Answer(200, payload, {})

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        api_key = headers.get(API_KEY_HEADER)
        authorization = headers.get("authorization")
        with self._cond:
            api_keys, auth_tokens = self._api_keys, self._auth_tokens
        if api_key is None and authorization is None:
            raise _ApiError(
                401,
                "You didn't provide an API key. Provide it in the x-portkey-api-key header "
                "or as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        if api_keys is not None and api_key not in api_keys:
            raise _ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        if authorization is not None and auth_tokens is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in auth_tokens:
                raise _ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    @staticmethod
    def _not_found(thread_id: str) -> _ApiError:
        return _ApiError(404, f"No thread found with id '{thread_id}'.", param=None)

    @staticmethod
    def _new_thread(thread_id: str) -> dict[str, Any]:
        return {
            "id": thread_id,
            "object": "thread",
            "created_at": int(time.time()),
            "metadata": {},
            "tool_resources": {},
        }

    @staticmethod
    def _error_answer(error: _ApiError) -> _Answer:
        return _Answer(error.status, json.dumps(error.body()).encode("utf-8"), {})

    def _write(
        self,
        handler: _Handler,
        exchange: _Exchange,
        answer: _Answer,
        *,
        drop: DropMode | None = None,
        drip: float = 0.0,
    ) -> None:
        """Send ``answer`` (or part of it, or nothing), recording it just before the first byte."""
        if drop == "before_response":
            handler.close_connection = True
            self._finish(exchange, 0)
            return
        trace_id = exchange.headers.get(TRACE_ID_HEADER)
        try:
            handler.send_response(answer.status)  # buffered until end_headers()
            names = {name.lower() for name in answer.headers}
            if "content-type" not in names and answer.body:
                handler.send_header("Content-Type", "application/json")
            for name, value in answer.headers.items():
                if name.lower() not in ("content-length", "transfer-encoding"):
                    handler.send_header(name, value)
            if trace_id is not None:
                handler.send_header(TRACE_ID_HEADER, trace_id)
            if drop == "mid_response":
                sent = answer.body[: len(answer.body) // 2]
                handler.send_header("Content-Length", str(max(len(answer.body), len(sent) + 1)))
                handler.close_connection = True
                self._finish(exchange, 0)
                handler.end_headers()
                handler.wfile.write(sent)
                return
            handler.send_header("Content-Length", str(len(answer.body)))
            self._finish(exchange, answer.status)
            handler.end_headers()
            if drip > 0:
                for index in range(len(answer.body)):
                    handler.wfile.write(answer.body[index : index + 1])
                    handler.wfile.flush()
                    if self._stopping.wait(drip):
                        handler.close_connection = True
                        return
                return
            handler.wfile.write(answer.body)
        except OSError:
            handler.close_connection = True
            self._mark_dropped(exchange)


def _accept_loop(server: _Server, wake: socket.socket) -> None:
    """Accept connections until ``wake`` becomes readable (instant stop, no polling)."""
    server.socket.setblocking(False)
    with selectors.DefaultSelector() as selector:
        selector.register(server.socket, selectors.EVENT_READ)
        selector.register(wake, selectors.EVENT_READ)
        while True:
            for key, _ in selector.select():
                if key.fileobj is wake:
                    return
                try:
                    request, address = server.get_request()
                except OSError:
                    continue  # the client gave up before we accepted
                request.setblocking(True)
                try:
                    server.process_request(request, address)
                except Exception:
                    server.handle_error(request, address)
                    server.shutdown_request(request)


def _shutdown_socket(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


# --------------------------------------------------------------------------- standalone


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in until Ctrl-C / SIGTERM; print its URL (first stdout line) first."""
    parser = argparse.ArgumentParser(prog="python -m devstack.portkey_standin", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    parser.add_argument("--prefix", default="/v1")
    parser.add_argument("--api-key", action="append", dest="api_keys", help="accepted x-portkey-api-key")
    parser.add_argument("--auth-token", action="append", dest="auth_tokens", help="accepted Bearer token")
    parser.add_argument("--no-beta-header", action="store_true", help="do not require OpenAI-Beta")
    parser.add_argument("--no-auto-create", action="store_true", help="unknown threads are 404")
    args = parser.parse_args(argv)

    standin = PortkeyStandIn(
        prefix=args.prefix,
        api_keys=args.api_keys,
        auth_tokens=args.auth_tokens,
        require_beta_header=not args.no_beta_header,
        auto_create=not args.no_auto_create,
        host=args.host,
        port=args.port,
    )
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with standin:
        print(standin.url, flush=True)
        while not done.wait(0.5):
            pass
    print("stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
