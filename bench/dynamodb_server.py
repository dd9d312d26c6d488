"""moto's DynamoDB in its own process, for the state table of the benchmarked handler.

On Lambda, DynamoDB does not run inside the function's process. moto in the benchmark's own process
would: every state table call would then compete with the handler for the GIL, and the handler would
be charged for moto's work. ``python -m bench.dynamodb_server`` prints its URL as the first stdout
line and serves until SIGTERM; :class:`DynamoDBProcess` starts and stops it. The function reaches it
through ``AWS_ENDPOINT_URL_DYNAMODB`` (botocore's per-service endpoint variable).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from moto.server import ThreadedMotoServer

from bench.latency_server import LatencyServerProcess


class DynamoDBProcess(LatencyServerProcess):
    """Starts ``bench.dynamodb_server`` in a child process; a context manager that always stops it."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.dynamodb_server"]


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        print(f"http://{host}:{port}", flush=True)
        while not stopped.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
