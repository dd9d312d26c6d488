"""A local HTTP stand-in for Portkey's Modify Thread endpoint (Assistants API v2 thread store).

It answers ``POST {prefix}/threads/{id}`` (modify thread) and ``GET {prefix}/threads/{id}``
(retrieve thread) like Portkey / OpenAI do, and ``POST``/``GET {prefix}/conversations/{id}`` (update
and retrieve a conversation: body ``{"metadata": ...}`` only, no ``OpenAI-Beta`` needed, 404
"Conversation with id '…' not found."), keeps threads and conversations in memory, records every request,
and can be scripted per request (status, body, headers, slow, dropped connections) so that
tests can drive retries, timeouts and concurrency deterministically.

Two ways of being reached:

* directly, as Portkey (``url`` = ``http://127.0.0.1:PORT/v1``): requests carry
  ``x-portkey-api-key`` plus routing headers;
* behind the open-source Portkey gateway as a *custom host* (``custom_host = url``): the
  gateway strips ``x-portkey-*`` headers and forwards ``Authorization: Bearer <provider key>``
  to ``{custom_host}/threads/{id}``.

The parts live in :mod:`devstack.standin` (store, fault scripting, server); this module ties them
together and is the public entry point. Standard library only. Run standalone with
``python -m devstack.portkey_standin --port 0``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import FrameType, TracebackType
from typing import Any

from devstack.standin.faults import (
    DEFAULT_HOLD_TIMEOUT,
    DropMode,
    Reply,
    ScriptBook,
    scripted_answer,
    wait_for_release,
)
from devstack.standin.server import (
    TRACE_ID_HEADER,
    BodyError,
    Exchange,
    Handler,
    RecordedRequest,
    Server,
    accept_loop,
    conversation_id_for,
    normalize_prefix,
    read_body,
    request_headers,
    shutdown_socket,
    thread_id_for,
    write_answer,
)
from devstack.standin.store import (
    METADATA_SEMANTICS,
    Answer,
    ApiError,
    MetadataSemantics,
    ThreadStore,
    conversation_not_found,
    default_error,
    error_answer,
    new_conversation,
    not_found,
    parse_json,
    validate_conversation_update,
    validate_update,
)
from devstack.standin.token_bucket import TokenBucket

__all__ = [
    "METADATA_SEMANTICS",
    "TRACE_ID_HEADER",
    "DropMode",
    "MetadataSemantics",
    "PortkeyStandIn",
    "RecordedRequest",
    "Reply",
    "main",
]

# The names subclasses (devstack/azure_openai_standin.py, bench/soak/faults.py) import from here.
_Answer = Answer
_ApiError = ApiError
_Exchange = Exchange
_Handler = Handler

API_KEY_HEADER = "x-portkey-api-key"
BETA_HEADER_VALUE = "assistants=v2"
_STOP_JOIN_SECONDS = 1.0


class PortkeyStandIn:
    """In-memory Portkey / Assistants thread store over HTTP, scriptable per request.

    Scripted replies are consumed in this order for a request to thread ``T``: the queue
    ``script(T, ...)``, then ``always(T, ...)``, then the any-thread queue ``script(None, ...)``;
    otherwise the request gets the normal behaviour. Only thread and conversation endpoints consume
    scripts; a conversation's are keyed by its id like a thread's.

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
        latency: float = 0.0,
        metadata_semantics: MetadataSemantics = "merge",
    ) -> None:
        """Configure; nothing listens until :meth:`start`.

        ``api_keys``: if given, ``x-portkey-api-key`` must be one of them. ``auth_tokens``: if
        given, a request carrying ``Authorization`` must carry ``Bearer <one of them>``. A request
        with neither header is always 401. ``port=0`` lets the OS pick a free port. ``latency``: seconds
        every normal (unscripted) answer takes, like an upstream call behind the gateway.
        ``metadata_semantics``: how an update's ``metadata`` is written. ``merge`` (the default, as
        OpenAI was observed to behave): the keys it names are set, the others stay, and a thread that
        would hold more than 16 keys is refused (400, nothing written); ``replace``: the whole map is
        replaced. ``tool_resources`` is replaced whole under both.
        """
        self.prefix = normalize_prefix(prefix)
        self.require_beta_header = require_beta_header
        self.auto_create = auto_create
        self.host = host
        self.hold_timeout = hold_timeout
        self.latency = latency
        self._requested_port = port
        self._bucket: TokenBucket | None = None

        self._cond = threading.Condition(threading.RLock())
        self._api_keys: frozenset[str] | None = None if api_keys is None else frozenset(api_keys)
        self._auth_tokens: frozenset[str] | None = None if auth_tokens is None else frozenset(auth_tokens)
        self._store = ThreadStore(self._cond, metadata_semantics)
        self._conversations = ThreadStore(self._cond, metadata_semantics, new=new_conversation)
        self._scripts = ScriptBook(self._cond)
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
        self._server: Server | None = None
        self._serve_thread: threading.Thread | None = None
        self._wake: tuple[socket.socket, socket.socket] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> PortkeyStandIn:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            raise RuntimeError("PortkeyStandIn is already running")
        self._stopping.clear()
        server = Server((self.host, self._requested_port), self)
        wake = socket.socketpair()
        thread = threading.Thread(
            target=accept_loop,
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
            shutdown_socket(sock)
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
    def metadata_semantics(self) -> MetadataSemantics:
        """How this stand-in writes an update's ``metadata``: ``merge`` or ``replace``."""
        return self._store.semantics

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

    def rate_limit(
        self, per_second: float | None, *, burst: float | None = None, retry_after: str = "1"
    ) -> None:
        """Accept ``per_second`` thread requests a second (bursts of ``burst``, default one second's worth)
        and answer the rest 429 with ``Retry-After``, before any script; ``None`` lifts the limit."""
        with self._cond:
            if per_second is None:
                self._bucket = None
                return
            capacity = per_second if burst is None else burst
            self._bucket = TokenBucket(per_second, capacity, retry_after, capacity, time.monotonic())

    def script(self, thread_id: str | None, *replies: Reply) -> None:
        """Queue replies for requests to ``thread_id`` (``None``: any thread); one per request."""
        self._scripts.script(thread_id, replies)

    def always(self, thread_id: str, reply: Reply) -> None:
        """Answer every request to ``thread_id`` with ``reply`` (after its own script queue)."""
        self._scripts.always(thread_id, reply)

    def forget_always(self, thread_id: str) -> None:
        """Undo :meth:`always` for ``thread_id``."""
        self._scripts.forget_always(thread_id)

    def pending_scripts(self, thread_id: str | None) -> int:
        """How many queued (not yet consumed) replies remain for ``thread_id``."""
        return self._scripts.pending(thread_id)

    def seed(
        self,
        thread_id: str,
        metadata: dict[str, Any] | None = None,
        tool_resources: dict[str, Any] | None = None,
    ) -> None:
        """Create or overwrite a stored thread (``None`` fields start as ``{}`` like a new thread)."""
        self._store.seed(thread_id, metadata, tool_resources)

    def thread(self, thread_id: str) -> dict[str, Any] | None:
        """A copy of the stored ThreadObject, or ``None``."""
        return self._store.get(thread_id)

    def conversation(self, conversation_id: str) -> dict[str, Any] | None:
        """A copy of the stored conversation, or ``None``."""
        return self._conversations.get(conversation_id)

    @property
    def conversation_prefix(self) -> str:
        """Where conversations live: ``{prefix}/conversations/{id}`` (a hook: Azure's are under ``/v1``)."""
        return self.prefix

    def reset(self) -> None:
        """Forget scripts, records, counters, threads and conversations (in-flight ones: not recorded)."""
        with self._cond:
            self._store.clear()
            self._conversations.clear()
            self._scripts.clear()
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
        """Recorded requests to one thread (or conversation), in arrival order."""
        return [
            record for record in self.recorded() if thread_id in (record.thread_id, record.conversation_id)
        ]

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
            shutdown_socket(sock)

    def _unregister_connection(self, sock: socket.socket) -> None:
        with self._cond:
            self._connections.pop(sock, None)

    def _next_reply(self, thread_id: str | None) -> Reply | None:
        """The scripted reply for this request, or ``None`` for the normal behaviour (a hook)."""
        return self._scripts.next_reply(thread_id)

    def _arrive(self, handler: Handler) -> Exchange:
        """Count the request in (arrived, in flight) and start its exchange."""
        arrived_at = time.monotonic()
        with self._cond:
            generation = self._generation
            sequence = self._next_sequence
            self._next_sequence += 1
            self._arrived += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._cond.notify_all()
        return Exchange(
            generation=generation,
            sequence=sequence,
            arrived_at=arrived_at,
            method=handler.command,
            path=handler.path,
            thread_id=thread_id_for(self.prefix, handler.path),
            headers=request_headers(handler),
            conversation_id=conversation_id_for(self.conversation_prefix, handler.path),
        )

    def _serve(self, handler: Handler) -> None:
        exchange = self._arrive(handler)
        try:
            try:
                exchange.body = read_body(handler, exchange.headers)
            except BodyError:
                handler.close_connection = True
                error = ApiError(400, "Could not read the request body.")
                self._write(handler, exchange, error_answer(error))
                return
            if exchange.body:
                try:
                    exchange.parsed = parse_json(exchange.body)
                except ValueError:
                    exchange.parsed = None
            self._answer(handler, exchange)
        except Exception:
            self._note_error(traceback.format_exc())
            handler.close_connection = True
        finally:
            self._finish(exchange, 0)  # no-op unless nothing was answered

    def _finish(self, exchange: Exchange, status: int) -> None:
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
            conversation_id=exchange.conversation_id,
        )
        with self._cond:
            self._in_flight -= 1
            if exchange.generation == self._generation:
                self._records.append(record)
                exchange.record = record
            self._cond.notify_all()

    def _mark_dropped(self, exchange: Exchange) -> None:
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

    def _answer(self, handler: Handler, exchange: Exchange) -> None:
        """Produce and send the answer: scripted if a reply is queued, else the normal behaviour."""
        retry_after = self._over_rate_limit(exchange)
        if retry_after is not None:
            refused = Answer(429, json.dumps(default_error(429)).encode(), {"Retry-After": retry_after})
            self._write(handler, exchange, refused)
            return
        target = exchange.thread_id if exchange.conversation_id is None else exchange.conversation_id
        reply = self._next_reply(target)
        if reply is None:
            if self.latency > 0 and self._stopping.wait(self.latency):
                handler.close_connection = True  # stopping: drop it
                return
            try:
                answer = self._normal(exchange)
            except ApiError as error:
                answer = error_answer(error)
            self._write(handler, exchange, answer)
            return
        if not wait_for_release(reply, stopping=self._stopping, hold_timeout=self.hold_timeout):
            handler.close_connection = True  # stopping: drop it
            return
        answer = scripted_answer(
            reply,
            method=exchange.method,
            thread_id=target,
            parsed=exchange.parsed,
            store=self._store if exchange.conversation_id is None else self._conversations,
            headers=exchange.headers,
        )
        self._write(
            handler, exchange, answer, drop=reply.drop, drip=reply.drip, drip_headers=reply.drip_headers
        )

    def _over_rate_limit(self, exchange: Exchange) -> str | None:
        """The ``Retry-After`` to answer with when the token bucket refuses this request, else None."""
        with self._cond:
            bucket = self._bucket
            targets = (exchange.thread_id, exchange.conversation_id)
            if bucket is None or targets == (None, None) or bucket.take(time.monotonic()):
                return None
            return bucket.retry_after

    def _normal(self, exchange: Exchange) -> Answer:
        """What Portkey answers (a hook: the Azure stand-in checks more first)."""
        method, raw_path, thread_id = exchange.method, exchange.path, exchange.thread_id
        headers, parsed = exchange.headers, exchange.parsed
        self._check_auth(headers)
        if exchange.conversation_id is not None and method in ("GET", "POST"):
            return self._conversation_answer(exchange)
        if thread_id is None or method not in ("GET", "POST"):
            raise ApiError(404, f"Invalid URL ({method} {raw_path.split('?', 1)[0]})")
        if self.require_beta_header:
            beta = [part.strip() for part in headers.get("openai-beta", "").split(",")]
            if BETA_HEADER_VALUE not in beta:
                raise ApiError(
                    400,
                    "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
                    "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
                    code="missing_beta_header",
                )
        if method == "GET":
            found = self.thread(thread_id)
            if found is None:
                raise not_found(thread_id)
            return Answer(200, json.dumps(found).encode("utf-8"), {})

        _check_json_body(exchange)
        stored = self._store.apply(thread_id, validate_update(parsed), create=self.auto_create)
        if stored is None:
            raise not_found(thread_id)
        return Answer(200, json.dumps(stored).encode("utf-8"), {})

    def _conversation_answer(self, exchange: Exchange) -> Answer:
        """GET or POST ``{conversation_prefix}/conversations/{id}``, as OpenAI answers them."""
        conversation_id = exchange.conversation_id
        assert conversation_id is not None
        if exchange.method == "GET":
            found = self.conversation(conversation_id)
            if found is None:
                raise conversation_not_found(conversation_id)
            return Answer(200, json.dumps(found).encode("utf-8"), {})
        _check_json_body(exchange)
        update = validate_conversation_update(exchange.parsed)
        stored = self._conversations.apply(conversation_id, update, create=self.auto_create)
        if stored is None:
            raise conversation_not_found(conversation_id)
        return Answer(200, json.dumps(stored).encode("utf-8"), {})

    def _check_auth(self, headers: Mapping[str, str]) -> None:
        """Refuse a request without a valid key (a hook: the Azure stand-in checks ``api-key``)."""
        api_key = headers.get(API_KEY_HEADER)
        authorization = headers.get("authorization")
        with self._cond:
            api_keys, auth_tokens = self._api_keys, self._auth_tokens
        if api_key is None and authorization is None:
            raise ApiError(
                401,
                "You didn't provide an API key. Provide it in the x-portkey-api-key header "
                "or as 'Authorization: Bearer YOUR_KEY'.",
                code="missing_api_key",
            )
        if api_keys is not None and api_key not in api_keys:
            raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")
        if authorization is not None and auth_tokens is not None:
            scheme, _, token = authorization.partition(" ")
            if scheme.lower() != "bearer" or token.strip() not in auth_tokens:
                raise ApiError(401, "Incorrect API key provided.", code="invalid_api_key")

    def _write(
        self,
        handler: Handler,
        exchange: Exchange,
        answer: Answer,
        *,
        drop: DropMode | None = None,
        drip: float = 0.0,
        drip_headers: float = 0.0,
    ) -> None:
        """Send ``answer`` (or part of it, or nothing), recording it just before the first byte."""
        write_answer(
            handler,
            answer,
            trace_id=exchange.headers.get(TRACE_ID_HEADER),
            committed=lambda status: self._finish(exchange, status),
            failed=lambda: self._mark_dropped(exchange),
            stopping=self._stopping,
            drop=drop,
            drip=drip,
            drip_headers=drip_headers,
        )


# --------------------------------------------------------------------------- standalone


def _check_json_body(exchange: Exchange) -> None:
    """Refuse a POST whose body is not JSON, with OpenAI's words."""
    content_type = exchange.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise ApiError(
            400,
            f"Invalid Content-Type header ({content_type!r}), expected application/json.",
            code="invalid_content_type",
        )
    if exchange.parsed is None and exchange.body.strip() != b"null":
        raise ApiError(
            400,
            "We could not parse the JSON body of your request. "
            "(HINT: The API expects a JSON payload, but what was sent was not valid JSON.)",
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stand-in until Ctrl-C / SIGTERM; print its URL (first stdout line) first."""
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m devstack.portkey_standin", description=__doc__
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 = any free port (default)")
    parser.add_argument("--prefix", default="/v1")
    parser.add_argument("--api-key", action="append", dest="api_keys", help="accepted x-portkey-api-key")
    parser.add_argument("--auth-token", action="append", dest="auth_tokens", help="accepted Bearer token")
    parser.add_argument("--no-beta-header", action="store_true", help="do not require OpenAI-Beta")
    parser.add_argument("--no-auto-create", action="store_true", help="unknown threads are 404")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds each normal answer takes")
    parser.add_argument("--rate-limit", type=float, help="thread requests per second; beyond: 429")
    parser.add_argument(
        "--metadata-semantics",
        choices=METADATA_SEMANTICS,
        default="merge",
        help="merge: an update sets the keys it names, the rest stay (default, as OpenAI); "
        "replace: the whole metadata map is replaced",
    )
    args = parser.parse_args(argv)

    standin = PortkeyStandIn(
        prefix=args.prefix,
        api_keys=args.api_keys,
        auth_tokens=args.auth_tokens,
        require_beta_header=not args.no_beta_header,
        auto_create=not args.no_auto_create,
        host=args.host,
        port=args.port,
        latency=args.latency,
        metadata_semantics=args.metadata_semantics,
    )
    standin.rate_limit(args.rate_limit)
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
