"""The HTTP server base shared by the local stand-ins (Portkey, Lambda Runtime API, benchmark server)."""

from __future__ import annotations

import socketserver
import sys
import traceback
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
