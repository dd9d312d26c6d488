"""The HTTP server base shared by the local stand-ins (Portkey, Lambda Runtime API, benchmark server)."""

from __future__ import annotations

import contextlib
import socketserver
import sys
import threading
import traceback
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any


class LoopbackHTTPServer(ThreadingHTTPServer):
    """Daemon handler threads, a bind without reverse DNS, and client hang-ups treated as normal."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), which can stall on reverse DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not isinstance(sys.exc_info()[1], OSError):  # resets and broken pipes are normal here
            self.report_error(traceback.format_exc())

    def report_error(self, text: str) -> None:
        """Where a handler's unexpected exception goes; by default stderr, as http.server does."""
        sys.stderr.write(text)


@contextlib.contextmanager
def serving(server: socketserver.BaseServer, name: str = "loopback-http") -> Iterator[None]:
    """Serve on a background thread for the block's duration; always shut down, close and join."""
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=name, daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
