"""A local stand-in for the Lambda Runtime API, the HTTP interface a runtime client polls.

AWS's runtime interface client (``python -m awslambdaric handler.lambda_handler`` with
``AWS_LAMBDA_RUNTIME_API=host:port``) talks to it exactly as it talks to Lambda:

* ``GET  /2018-06-01/runtime/invocation/next`` long-polls for the next queued event and receives it
  with ``Lambda-Runtime-Aws-Request-Id``, ``Lambda-Runtime-Deadline-Ms``,
  ``Lambda-Runtime-Invoked-Function-Arn`` and ``Lambda-Runtime-Trace-Id``;
* ``POST /2018-06-01/runtime/invocation/{id}/response`` and ``.../{id}/error`` report the outcome;
* ``POST /2018-06-01/runtime/init/error`` reports a failed initialisation (import error, missing
  handler), after which the client exits.

:meth:`RuntimeApi.invoke` queues an event and waits (bounded) for its outcome, the way a
synchronous ``Invoke`` does. Init failures and a runtime that exits are reported the way Lambda
reports them (an error result with ``Runtime.*`` error types) as soon as they are known, provided
whoever started the runtime process calls :meth:`RuntimeApi.runtime_exited` when it ends.

Standard library only; loopback only; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import re
import secrets
import threading
import time
import traceback
import uuid
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from types import TracebackType
from typing import Any

from devstack.loopback_http import LoopbackHTTPServer

__all__ = ["DEFAULT_FUNCTION_ARN", "InvocationResult", "RuntimeApi"]

API_VERSION = "2018-06-01"
NEXT_PATH = f"/{API_VERSION}/runtime/invocation/next"
INIT_ERROR_PATH = f"/{API_VERSION}/runtime/init/error"
_RESULT_PATH = re.compile(
    rf"^/{API_VERSION}/runtime/invocation/(?P<request_id>[^/]+)/(?P<kind>response|error)$"
)

REQUEST_ID_HEADER = "Lambda-Runtime-Aws-Request-Id"
DEADLINE_HEADER = "Lambda-Runtime-Deadline-Ms"
FUNCTION_ARN_HEADER = "Lambda-Runtime-Invoked-Function-Arn"
TRACE_ID_HEADER = "Lambda-Runtime-Trace-Id"
ERROR_TYPE_HEADER = "Lambda-Runtime-Function-Error-Type"

DEFAULT_FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:portkey-thread-updater"
DEFAULT_NEXT_WAIT_S = 600.0
"""How long ``/next`` holds a poll open without an event before answering 503 (the client then exits)."""
RESULT_GRACE_S = 5.0
"""Default for how long past an invocation's deadline :meth:`RuntimeApi.invoke` waits for its outcome."""
_STOP_JOIN_S = 5.0


@dataclass(frozen=True)
class InvocationResult:
    """The outcome of one invocation, as a synchronous ``Invoke`` would return it.

    ``ok``: the runtime posted a response; ``payload`` is its decoded JSON (``bytes`` if it was not
    JSON). Otherwise ``error`` is the error document (``errorType``, ``errorMessage``, ...), from
    ``.../error``, from ``init/error`` when initialisation failed, or a ``Runtime.ExitError``
    made up here when the runtime process ended without answering.
    """

    ok: bool
    payload: Any
    error: dict[str, Any] | None
    request_id: str = ""
    error_type: str | None = None
    """``Lambda-Runtime-Function-Error-Type`` if the runtime sent one, else the document's
    ``errorType`` (awslambdaric 3.1.1 sends the header only with init errors); ``None`` on success."""


@dataclass
class _Invocation:
    request_id: str
    body: bytes
    deadline_ms: int
    trace_id: str
    taken: bool = False
    result: InvocationResult | None = None


def _trace_id() -> str:
    return f"Root=1-{int(time.time()):08x}-{secrets.token_hex(12)};Parent={secrets.token_hex(8)};Sampled=0"


def _decode(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body


class _Server(LoopbackHTTPServer):
    request_queue_size = 64
    api: RuntimeApi

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Keep every error (e.g. a runtime killed mid-request) instead of printing to stderr."""
        self.api._note_error(traceback.format_exc())


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the runtime's own output is what matters."""

    def do_GET(self) -> None:
        if self.path != NEXT_PATH:
            self._reply(404, {"errorType": "NotFound", "errorMessage": f"unknown path {self.path}"})
            return
        invocation = self.server.api._next_invocation()
        if invocation is None:
            self._reply(503, {"errorType": "ServiceUnavailable", "errorMessage": "no invocation"})
            return
        self._reply(
            200,
            invocation.body,
            {
                REQUEST_ID_HEADER: invocation.request_id,
                DEADLINE_HEADER: str(invocation.deadline_ms),
                FUNCTION_ARN_HEADER: self.server.api.function_arn,
                TRACE_ID_HEADER: invocation.trace_id,
            },
        )

    def do_POST(self) -> None:
        length = self.headers.get("Content-Length")
        if length is None or not length.isdigit():
            self._reply(411, {"errorType": "LengthRequired", "errorMessage": "Content-Length required"})
            return
        body = self.rfile.read(int(length))
        error_type = self.headers.get(ERROR_TYPE_HEADER)
        api = self.server.api
        if self.path == INIT_ERROR_PATH:
            api._record_init_error(body, error_type)
            self._reply(202, {"status": "OK"})
            return
        match = _RESULT_PATH.match(self.path)
        if match is None:
            self._reply(404, {"errorType": "NotFound", "errorMessage": f"unknown path {self.path}"})
            return
        if api._record_result(match["request_id"], match["kind"] == "response", body, error_type):
            self._reply(202, {"status": "OK"})
        else:
            self._reply(400, {"errorType": "InvalidRequestID", "errorMessage": "unknown or answered"})

    def _reply(
        self, status: int, body: bytes | dict[str, Any], headers: dict[str, str] | None = None
    ) -> None:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)


class RuntimeApi:
    """The Lambda Runtime API on ``127.0.0.1``; ``address`` is the ``AWS_LAMBDA_RUNTIME_API`` value."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        function_arn: str = DEFAULT_FUNCTION_ARN,
        next_wait_s: float = DEFAULT_NEXT_WAIT_S,
        result_grace_s: float = RESULT_GRACE_S,
    ) -> None:
        self.host = host
        self.function_arn = function_arn
        self.next_wait_s = next_wait_s
        self.result_grace_s = result_grace_s
        self._requested_port = port
        self._cond = threading.Condition()
        self._pending: deque[_Invocation] = deque()
        self._invocations: dict[str, _Invocation] = {}
        self._init_error: dict[str, Any] | None = None
        self._init_error_type: str | None = None
        self._exit_code: int | None = None
        self._stopping = False
        self._errors: list[str] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> RuntimeApi:
        if self._server is not None:
            raise RuntimeError("already started")
        server = _Server((self.host, self._requested_port), _Handler)
        server.api = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="runtime-api", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; held ``/next`` polls are answered 503 and waiting ``invoke`` calls fail."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(_STOP_JOIN_S)

    def __enter__(self) -> RuntimeApi:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("not started")
        return self._server.server_address[1]

    @property
    def address(self) -> str:
        """``host:port``, the value for ``AWS_LAMBDA_RUNTIME_API``."""
        return f"{self.host}:{self.port}"

    # ------------------------------------------------------------------ what the runtime reported

    @property
    def init_error(self) -> dict[str, Any] | None:
        """The document posted to ``init/error`` (``errorType`` filled from the header if absent)."""
        with self._cond:
            if self._init_error is None:
                return None
            return dict(self._init_error)

    @property
    def results(self) -> list[InvocationResult]:
        """Outcomes of all answered invocations, in the order they were queued."""
        with self._cond:
            return [inv.result for inv in self._invocations.values() if inv.result is not None]

    @property
    def errors(self) -> list[str]:
        """Tracebacks of requests the server failed to handle (normally empty)."""
        with self._cond:
            return list(self._errors)

    def runtime_exited(self, returncode: int) -> None:
        """Tell the API that the runtime process ended: pending and later invokes fail at once.

        One API serves one runtime process (one execution environment); start a new one per process.
        """
        with self._cond:
            self._exit_code = returncode
            self._cond.notify_all()

    # ------------------------------------------------------------------ invoking

    def invoke(self, event: Any, timeout_s: float = 30.0) -> InvocationResult:
        """Queue ``event`` (deadline ``timeout_s`` from now) and wait for its outcome.

        Raises ``TimeoutError`` when nothing arrives within ``timeout_s`` + a short grace, and
        ``RuntimeError`` when the API is not running.
        """
        request_id = str(uuid.uuid4())
        invocation = _Invocation(
            request_id=request_id,
            body=json.dumps(event).encode("utf-8"),
            deadline_ms=int((time.time() + timeout_s) * 1000),
            trace_id=_trace_id(),
        )
        give_up = time.monotonic() + timeout_s + self.result_grace_s
        with self._cond:
            if self._server is None or self._stopping:
                raise RuntimeError("the runtime API is not running")
            self._invocations[request_id] = invocation
            self._pending.append(invocation)
            self._cond.notify_all()
            while invocation.result is None:
                failure = self._failure_for(invocation)
                if failure is not None:
                    invocation.result = failure
                    break
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    self._withdraw(invocation)
                    waited = timeout_s + self.result_grace_s
                    raise TimeoutError(
                        f"no outcome for invocation {request_id} within {waited:.1f}s "
                        f"({'taken' if invocation.taken else 'never taken'} by the runtime)"
                    )
                self._cond.wait(remaining)
            return invocation.result

    def _failure_for(self, invocation: _Invocation) -> InvocationResult | None:
        """Why ``invocation`` can no longer be answered, as Lambda would report it (lock held)."""
        if not invocation.taken and self._init_error is not None:
            self._withdraw(invocation)
            return InvocationResult(
                ok=False,
                payload=None,
                error=dict(self._init_error),
                request_id=invocation.request_id,
                error_type=self._init_error_type or self._init_error.get("errorType"),
            )
        if self._exit_code is not None or self._stopping:
            self._withdraw(invocation)
            code = self._exit_code
            reason = "the runtime API stopped" if code is None else f"exit status {code}"
            return InvocationResult(
                ok=False,
                payload=None,
                error={
                    "errorType": "Runtime.ExitError",
                    "errorMessage": f"RequestId: {invocation.request_id} Error: Runtime exited ({reason})",
                },
                request_id=invocation.request_id,
                error_type="Runtime.ExitError",
            )
        return None

    def _withdraw(self, invocation: _Invocation) -> None:
        if not invocation.taken:
            with contextlib.suppress(ValueError):
                self._pending.remove(invocation)

    # ------------------------------------------------------------------ called by the handler threads

    def _next_invocation(self) -> _Invocation | None:
        give_up = time.monotonic() + self.next_wait_s
        with self._cond:
            while not self._pending and not self._stopping:
                remaining = give_up - time.monotonic()
                if remaining <= 0:
                    return None
                self._cond.wait(remaining)
            if self._stopping:
                return None
            invocation = self._pending.popleft()
            invocation.taken = True
            self._cond.notify_all()
            return invocation

    def _note_error(self, text: str) -> None:
        with self._cond:
            self._errors.append(text)

    def _record_init_error(self, body: bytes, error_type: str | None) -> None:
        decoded = _decode(body)
        document: dict[str, Any] = decoded if isinstance(decoded, dict) else {"errorMessage": repr(decoded)}
        if error_type and not document.get("errorType"):
            document["errorType"] = error_type
        with self._cond:
            self._init_error = document
            self._init_error_type = error_type
            self._cond.notify_all()

    def _record_result(self, request_id: str, ok: bool, body: bytes, error_type: str | None) -> bool:
        with self._cond:
            invocation = self._invocations.get(request_id)
            if invocation is None or not invocation.taken or invocation.result is not None:
                return False
            if ok:
                invocation.result = InvocationResult(
                    ok=True, payload=_decode(body), error=None, request_id=request_id
                )
            else:
                decoded = _decode(body)
                document: dict[str, Any] = (
                    decoded if isinstance(decoded, dict) else {"errorMessage": repr(decoded)}
                )
                if error_type and not document.get("errorType"):
                    document["errorType"] = error_type
                invocation.result = InvocationResult(
                    ok=False,
                    payload=None,
                    error=document,
                    request_id=request_id,
                    error_type=error_type or document.get("errorType"),
                )
            self._cond.notify_all()
            return True
