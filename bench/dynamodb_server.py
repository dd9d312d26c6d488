"""moto's DynamoDB in its own process, for the state table, counting what DynamoDB would bill.

On Lambda, DynamoDB does not run inside the function's process. moto in the benchmark's own process
would: every state table call would then compete with the handler for the GIL, and the handler would
be charged for moto's work. ``python -m bench.dynamodb_server`` prints its URL as the first stdout
line and serves until SIGTERM; :class:`DynamoDBProcess` starts and stops it. The function reaches it
through ``AWS_ENDPOINT_URL_DYNAMODB`` (botocore's per-service endpoint variable).

moto's own ``ConsumedCapacity`` is a constant whatever the item's size (``bench.capacity``), so a
counting layer in front of moto's WSGI app counts the calls per operation and the request units
DynamoDB would bill: for each write, the item is read from moto's backend before and after the call
(writes are serialised for that; moto serves one call at a time anyway) and billed by
``bench.capacity``. ``GET /_bench/stats`` answers the counters, ``POST /_bench/reset`` zeroes them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import urllib3
from moto.core.models import DEFAULT_ACCOUNT_ID
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
from werkzeug.serving import make_server

from bench.capacity import item_size, read_units, write_units
from bench.latency_server import LatencyServerProcess

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem"})
_REGION = re.compile(r"Credential=[^/]+/\d+/([^/]+)/dynamodb/")

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class DynamoDBProcess(LatencyServerProcess):
    """Starts ``bench.dynamodb_server`` in a child process; a context manager that always stops it."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "bench.dynamodb_server"]

    def _control(self, method: str, path: str) -> dict[str, Any]:
        response = urllib3.request(method, f"{self.url}{path}", timeout=10.0, retries=False)
        if response.status != 200:
            raise RuntimeError(f"DynamoDB server {path}: HTTP {response.status}")
        document: dict[str, Any] = response.json()
        return document

    def stats(self) -> dict[str, Any]:
        """``calls`` per operation, ``write_units``, ``read_units``, ``failed_conditions``,
        ``max_item_bytes``, ``busy_s`` (moto's own time in the calls, counting excluded)."""
        return self._control("GET", "/_bench/stats")

    def reset(self) -> None:
        self._control("POST", "/_bench/reset")


class CountingApp:
    """moto's WSGI app with DynamoDB's billing counted in front of it."""

    def __init__(self, app: WsgiApp) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._stats = self._zero()

    @staticmethod
    def _zero() -> dict[str, Any]:
        return {
            "calls": Counter(),
            "write_units": 0,
            "read_units": 0.0,
            "failed_conditions": 0,
            "max_item_bytes": 0,
            "busy_s": 0.0,
        }

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith("/_bench/"):
            return self._control(environ, path, start_response)
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith("DynamoDB_"):
            return self._app(environ, start_response)
        operation = target.rsplit(".", 1)[-1]
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        request: dict[str, Any] = json.loads(body) if body else {}
        status: list[str] = []

        def recording(code: str, headers: Any, *rest: Any) -> Any:
            status.append(code)
            return start_response(code, headers, *rest)

        backend = _backend(environ)
        with self._lock if operation in WRITES else contextlib.nullcontext():
            before = _item(backend, request) if operation in WRITES or operation == "GetItem" else None
            started = time.perf_counter()
            answer = b"".join(self._app(environ, recording))
            busy_s = time.perf_counter() - started
            after = _item(backend, request) if operation in WRITES else None
        with self._lock:
            stats = self._stats
            stats["busy_s"] += busy_s
            stats["calls"][operation] += 1
            sizes = [item_size(before), item_size(after)]
            stats["max_item_bytes"] = max(stats["max_item_bytes"], *sizes)
            if operation in WRITES:
                stats["write_units"] += write_units(*sizes)
                if status and not status[0].startswith("2") and b"ConditionalCheckFailed" in answer:
                    stats["failed_conditions"] += 1
            elif operation == "GetItem":
                stats["read_units"] += read_units(sizes[0], consistent=bool(request.get("ConsistentRead")))
        return [answer]

    def _control(self, environ: dict[str, Any], path: str, start_response: StartResponse) -> Iterable[bytes]:
        with self._lock:
            if path == "/_bench/reset" and environ.get("REQUEST_METHOD") == "POST":
                self._stats = self._zero()
            document = {**self._stats, "calls": dict(self._stats["calls"])}
        data = json.dumps(document).encode()
        start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(data)))])
        return [data]


def _backend(environ: Mapping[str, Any]) -> Any:
    from moto.dynamodb.models import dynamodb_backends

    match = _REGION.search(environ.get("HTTP_AUTHORIZATION", ""))
    return dynamodb_backends[DEFAULT_ACCOUNT_ID][match.group(1) if match else "us-east-1"]


def _item(backend: Any, request: Mapping[str, Any]) -> dict[str, Any] | None:
    """The item a request names, in DynamoDB JSON, as moto holds it now (None: no such item)."""
    try:
        found = backend.get_item(
            request["TableName"], request["Key"] if "Key" in request else _key(backend, request)
        )
    except Exception:  # no table, bad key: the call itself will answer the error
        return None
    if found is None:
        return None
    attributes: dict[str, Any] = found.to_json()["Attributes"]
    return attributes


def _key(backend: Any, request: Mapping[str, Any]) -> dict[str, Any]:
    """A PutItem's key: the table's key attributes of the item."""
    hash_name, range_name = backend.get_table_keys_name(request["TableName"], request["Item"])
    return {name: request["Item"][name] for name in (hash_name, range_name) if name}


class CountingMotoServer(ThreadedMotoServer):
    def _server_entry(self) -> None:
        app = CountingApp(DomainDispatcherApplication(create_backend_app))
        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=MotoRequestHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


def main() -> int:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    server = CountingMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
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
