"""A minimal Portkey-like Modify Thread server with a configurable answer latency, for benchmarks.

``POST {prefix}/threads/{id}`` answers a ThreadObject (the request's ``metadata`` and
``tool_resources`` echoed) after sleeping ``latency`` seconds; nothing is validated or stored, so
the server costs as little as possible. HTTP/1.1 keep-alive, one thread per connection, and
``TCP_NODELAY`` on every accepted socket (without it, Nagle + delayed ACK add ~40 ms per answer on
a reused connection).

Control endpoints (same port): ``POST /_control/latency`` with ``{"seconds": 0.05}``;
``GET /_control/stats`` → ``{"requests", "max_in_flight", "connections"}``; ``POST /_control/reset``
(zeroes the counters).

Runs as its own process (``python -m bench.latency_server --port 0`` prints its URL as the first
stdout line and serves until SIGTERM/SIGINT) so that its CPU work does not compete for the
benchmarked process's GIL. :class:`LatencyServerProcess` starts and stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self

from devstack.loopback_http import LoopbackHTTPServer, serving

ROOT = Path(__file__).resolve().parent.parent
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0
MAX_LATENCY_S = 10.0
MAX_BODY = 1 << 20


class _State:
    def __init__(self, latency: float) -> None:
        self.lock = threading.Lock()
        self.latency = latency
        self.requests = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections: set[socket.socket] = set()
        self.connections_opened = 0

    def stats(self) -> dict[str, Any]:
        with self.lock:
            return {
                "latency": self.latency,
                "requests": self.requests,
                "max_in_flight": self.max_in_flight,
                "connections": len(self.connections),
                "connections_opened": self.connections_opened,
            }


class _Server(LoopbackHTTPServer):
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], state: _State, prefix: str) -> None:
        self.state = state
        self.prefix = prefix.rstrip("/")
        super().__init__(address, _Handler)

    def close_connections(self) -> None:
        with self.state.lock:
            connections = list(self.state.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "BenchLatency/1.0"

    @property
    def _server(self) -> _Server:
        assert isinstance(self.server, _Server)
        return self.server

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        state = self._server.state
        with state.lock:
            state.connections.add(self.connection)
            state.connections_opened += 1

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        state = self._server.state
        with state.lock:
            state.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def version_string(self) -> str:
        return self.server_version

    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0 or length > MAX_BODY:
            raise ValueError("bad Content-Length")
        return self.rfile.read(length) if length else b""

    def _send(self, status: int, document: Any, extra: dict[str, str] | None = None) -> None:
        data = json.dumps(document, separators=(",", ":")).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        if self.path == "/_control/stats":
            self._send(200, self._server.state.stats())
        else:
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})

    def do_POST(self) -> None:
        body = self._body()
        state = self._server.state
        if self.path.startswith("/_control/"):
            self._control(body)
            return
        prefix = f"{self._server.prefix}/threads/"
        if not self.path.startswith(prefix):
            self._send(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        with state.lock:
            state.requests += 1
            state.in_flight += 1
            state.max_in_flight = max(state.max_in_flight, state.in_flight)
            latency = state.latency
        try:
            if latency > 0:
                time.sleep(latency)
            try:
                update = json.loads(body) if body else {}
            except ValueError:
                update = {}
            if not isinstance(update, dict):
                update = {}
            thread = {
                "id": self.path[len(prefix) :].split("?", 1)[0],
                "object": "thread",
                "created_at": 1764000000,
                "metadata": update.get("metadata") or {},
                "tool_resources": update.get("tool_resources") or {},
            }
            trace = self.headers.get("x-portkey-trace-id")
            self._send(200, thread, {"x-portkey-trace-id": trace} if trace else None)
        finally:
            with state.lock:
                state.in_flight -= 1

    def _control(self, body: bytes) -> None:
        state = self._server.state
        if self.path == "/_control/latency":
            seconds = float(json.loads(body)["seconds"])
            if not 0 <= seconds <= MAX_LATENCY_S:
                self._send(400, {"error": {"message": f"latency must be 0..{MAX_LATENCY_S} s"}})
                return
            with state.lock:
                state.latency = seconds
            self._send(200, state.stats())
        elif self.path == "/_control/reset":
            with state.lock:
                state.requests = 0
                state.max_in_flight = state.in_flight
                state.connections_opened = len(state.connections)
            self._send(200, state.stats())
        else:
            self._send(404, {"error": {"message": "not found"}})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m bench.latency_server", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--prefix", default="/v1")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds before each answer")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("loopback hosts only")
    server = _Server((args.host, args.port), _State(args.latency), args.prefix)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with serving(server, name="latency-server"):
        print(f"http://{args.host}:{server.server_address[1]}{args.prefix}", flush=True)
        while not stop.wait(0.5):
            pass
    server.close_connections()
    return 0


class LatencyServerProcess:
    """Starts ``bench.latency_server`` in a child process; a context manager that always stops it."""

    def __init__(self, latency: float = 0.0) -> None:
        self._latency = latency
        self._process: subprocess.Popen[str] | None = None
        self.url = ""
        self.root = ""

    def __enter__(self) -> Self:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self._process = subprocess.Popen(
            self.command(),
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=ROOT,
        )
        try:
            self.url = self._read_url()
        except BaseException:
            self.stop()
            raise
        self.root = self.url.rsplit("/", 1)[0]
        return self

    def command(self) -> list[str]:
        """The child's command line: it prints its URL as the first stdout line, serves until SIGTERM."""
        return [sys.executable, "-m", "bench.latency_server", "--port", "0", "--latency", str(self._latency)]

    def _read_url(self) -> str:
        assert self._process is not None
        stdout = self._process.stdout
        assert stdout is not None
        found: list[str] = []
        reader = threading.Thread(target=lambda: found.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(START_TIMEOUT_S)
        if not found or not found[0].startswith("http://"):
            raise RuntimeError(f"{self.command()[2]} did not start within {START_TIMEOUT_S} s")
        return found[0].strip()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        wait_or_kill(process)


def wait_or_kill(process: subprocess.Popen[str]) -> None:
    """Wait for a child told to stop; kill it if it does not within ``STOP_TIMEOUT_S``; close its stdout."""
    try:
        process.wait(STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(STOP_TIMEOUT_S)
    if process.stdout is not None:
        process.stdout.close()


if __name__ == "__main__":
    raise SystemExit(main())
