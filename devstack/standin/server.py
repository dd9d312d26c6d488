"""The stand-in's HTTP plumbing: accepting connections, reading requests, writing (or dropping) answers.

Nothing here knows about threads or scripts: each request goes to the host's ``_serve``, which
decides the answer and calls :func:`write_answer` to send it.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any, Protocol, cast
from urllib.parse import unquote

from devstack.loopback_http import LoopbackHTTPServer
from devstack.standin.faults import DropMode
from devstack.standin.store import Answer

TRACE_ID_HEADER = "x-portkey-trace-id"


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
    conversation_id: str | None = None
    """Decoded conversation id when ``path`` is a conversation endpoint, else ``None``."""


@dataclass
class Exchange:
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
    conversation_id: str | None = None


class BodyError(Exception):
    """The request body could not be read (bad framing or the client went away)."""


class Host(Protocol):
    """What the server needs from the stand-in it serves."""

    def _serve(self, handler: Handler) -> None: ...

    def _register_connection(self, sock: socket.socket) -> None: ...

    def _unregister_connection(self, sock: socket.socket) -> None: ...

    def _note_error(self, text: str) -> None: ...


def normalize_prefix(prefix: str) -> str:
    """``"v1/"`` -> ``"/v1"``; ``""`` or ``"/"`` -> ``""``."""
    stripped = prefix.strip("/")
    return f"/{stripped}" if stripped else ""


def thread_id_for(prefix: str, raw_path: str) -> str | None:
    """The decoded thread id when ``raw_path`` is ``{prefix}/threads/{id}``, else ``None``."""
    return _id_under(f"{prefix}/threads/", raw_path)


def conversation_id_for(prefix: str, raw_path: str) -> str | None:
    """The decoded conversation id when ``raw_path`` is ``{prefix}/conversations/{id}``, else ``None``."""
    return _id_under(f"{prefix}/conversations/", raw_path)


def _id_under(base: str, raw_path: str) -> str | None:
    path = raw_path.split("?", 1)[0]
    if not path.startswith(base):
        return None
    segment = path[len(base) :]
    if not segment or "/" in segment:
        return None
    return unquote(segment)


def request_headers(handler: BaseHTTPRequestHandler) -> dict[str, str]:
    """Header names lower-cased; repeated headers joined with ``", "``."""
    headers: dict[str, str] = {}
    for name, value in handler.headers.items():
        key = name.lower()
        headers[key] = f"{headers[key]}, {value}" if key in headers else str(value)
    return headers


def _read_chunked(rfile: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        line = rfile.readline(65537)
        if not line:
            raise BodyError("truncated chunked body")
        try:
            size = int(line.split(b";", 1)[0].strip(), 16)
        except ValueError as exc:
            raise BodyError("bad chunk size") from exc
        if size == 0:
            while rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                pass  # trailers are ignored
            return b"".join(chunks)
        data = rfile.read(size)
        if len(data) < size:
            raise BodyError("truncated chunk")
        chunks.append(data)
        rfile.readline(65537)  # CRLF after the chunk


def read_body(handler: BaseHTTPRequestHandler, headers: Mapping[str, str]) -> bytes:
    """The request body, chunked or by ``Content-Length``; :class:`BodyError` if it cannot be read."""
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _read_chunked(handler.rfile)
    length_text = headers.get("content-length")
    if length_text is None:
        return b""
    try:
        length = int(length_text)
    except ValueError as exc:
        raise BodyError("bad Content-Length") from exc
    if length < 0:
        raise BodyError("negative Content-Length")
    body = handler.rfile.read(length) if length else b""
    if len(body) < length:
        raise BodyError("truncated body")
    return body


class Server(LoopbackHTTPServer):
    def __init__(self, address: tuple[str, int], standin: Host) -> None:
        self.standin = standin
        super().__init__(address, Handler)

    def report_error(self, text: str) -> None:
        self.standin._note_error(text)  # a bug in the stand-in: the tests' fixture asserts none


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "PortkeyStandIn/1.0"

    def version_string(self) -> str:
        return self.server_version

    @property
    def standin(self) -> Host:
        return cast(Server, self.server).standin

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


def write_answer(
    handler: Handler,
    answer: Answer,
    *,
    trace_id: str | None,
    committed: Callable[[int], None],
    failed: Callable[[], None],
    stopping: threading.Event,
    drop: DropMode | None = None,
    drip: float = 0.0,
    drip_headers: float = 0.0,
) -> None:
    """Send ``answer`` (or part of it, or nothing); ``drip``/``drip_headers``: one byte of the body /
    of the headers (after the status line) every that many seconds.

    ``committed(status)`` runs just before the first byte goes out (status 0: dropped), so a
    client holding its response always finds the request recorded; ``failed()`` runs when the
    connection broke while writing.
    """
    if drop == "before_response":
        handler.close_connection = True
        committed(0)
        return
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
            committed(0)
            handler.end_headers()
            handler.wfile.write(sent)
            return
        handler.send_header("Content-Length", str(len(answer.body)))
        committed(answer.status)
        if drip_headers > 0:
            wfile = handler.wfile
            handler.wfile = _DrippingWriter(wfile, drip_headers, stopping)  # type: ignore[assignment]
            try:
                handler.end_headers()  # writes the status line and headers in one go: here, byte by byte
            finally:
                handler.wfile = wfile
        else:
            handler.end_headers()
        if drip > 0:
            _drip(handler, answer.body, drip, stopping)
            return
        handler.wfile.write(answer.body)
    except OSError:
        handler.close_connection = True
        failed()


class _DrippingWriter:
    """A ``wfile`` that sends the first line it is given at once (the status line), then the rest
    one byte every ``pause`` seconds; stops (OSError) when ``stopping`` is set, so the connection
    is closed rather than finished."""

    def __init__(self, wfile: Any, pause: float, stopping: threading.Event) -> None:
        self._wfile, self._pause, self._stopping = wfile, pause, stopping
        self._first_line_sent = False

    def write(self, data: bytes) -> int:
        start = 0
        if not self._first_line_sent:
            start = data.find(b"\n") + 1
            self._first_line_sent = start > 0
            self._wfile.write(data[:start])
        for index in range(start, len(data)):
            self._wfile.write(data[index : index + 1])
            self._wfile.flush()
            if self._stopping.wait(self._pause):
                raise ConnectionAbortedError("stand-in stopping")
        return len(data)

    def flush(self) -> None:
        self._wfile.flush()


def _drip(handler: Handler, body: bytes, drip: float, stopping: threading.Event) -> None:
    """Write ``body`` one byte every ``drip`` seconds; give up (close) when ``stopping`` is set."""
    for index in range(len(body)):
        handler.wfile.write(body[index : index + 1])
        handler.wfile.flush()
        if stopping.wait(drip):
            handler.close_connection = True
            return


def accept_loop(server: Server, wake: socket.socket) -> None:
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


def shutdown_socket(sock: socket.socket) -> None:
    """Shut ``sock`` down both ways, ignoring one already gone."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
