"""The failing Portkey: the project's stand-in with a seeded fault injected into a share of requests."""

from __future__ import annotations

import collections
import random
import threading
from typing import TYPE_CHECKING, Any

from bench.soak.config import SILENT_WRITE_FAULTS, SoakConfig
from devstack.portkey_standin import TRACE_ID_HEADER, PortkeyStandIn, Reply

if TYPE_CHECKING:
    from devstack.portkey_standin import _Exchange, _Handler


class FaultyStandIn(PortkeyStandIn):
    """The Portkey stand-in, with a seeded fault injected into a share of the requests.

    The decision is a pure function of (seed, the update's ``seq``, how many requests for that update
    arrived before), so the same update meets the same faults in every run. ``always``/``script``
    replies (the gone threads) take precedence.
    """

    def __init__(self, config: SoakConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.faults: collections.Counter[str] = collections.Counter()
        # trace id -> faults after which the store holds the update but the function saw no answer
        self.silent_writes: collections.Counter[str] = collections.Counter()
        self._attempts_by_seq: collections.Counter[str] = collections.Counter()
        self._local = threading.local()
        self._kinds = list(config.fault_weights)
        self._weights = list(config.fault_weights.values())

    def _answer(self, handler: _Handler, exchange: _Exchange) -> None:
        self._local.exchange = exchange
        try:
            super()._answer(handler, exchange)
        finally:
            self._local.exchange = None

    def _next_reply(self, thread_id: str | None) -> Reply | None:
        scripted = super()._next_reply(thread_id)
        exchange: _Exchange | None = getattr(self._local, "exchange", None)
        if scripted is not None or thread_id is None or exchange is None:
            return scripted
        seq = update_key(exchange.parsed) or str(exchange.sequence)
        with self._cond:
            attempt = self._attempts_by_seq[seq]
            self._attempts_by_seq[seq] += 1
        rng = random.Random(f"{self.config.seed}:{seq}:{attempt}")
        if rng.random() >= self.config.fault_rate:
            return None
        kind = rng.choices(self._kinds, self._weights)[0]
        trace_id = exchange.headers.get(TRACE_ID_HEADER, "")
        with self._cond:
            self.faults[kind] += 1
            if kind in SILENT_WRITE_FAULTS and (kind != "read timeout" or self.config.late_timeout_writes):
                self.silent_writes[trace_id] += 1
        return self._reply_for(kind)

    def _reply_for(self, kind: str) -> Reply:
        timeout = self.config.read_timeout_s
        if kind.startswith("429"):
            headers = {"Retry-After": kind[-1]} if "Retry-After:" in kind else {}
            return Reply(status=429, headers=headers)
        if kind in {"500", "502", "503"}:
            return Reply(status=int(kind))
        if kind == "read timeout":
            # Answers well after the client gave up. Late-writing: a 200 that applies the update then;
            # otherwise a 504 that applies nothing (should a client still read it, it is transient).
            late = timeout + self.config.late_write_lag_s
            if self.config.late_timeout_writes:
                return Reply(status=200, delay=late)
            return Reply(status=504, delay=late, apply=False)
        if kind == "dropped before the answer":
            return Reply(drop="before_response")
        if kind == "dropped mid-answer":
            return Reply(drop="mid_response")  # applies the update, then cuts the body in half
        return Reply(delay=timeout * 0.6)  # slow answer, still inside the read timeout


def update_key(document: Any) -> str | None:
    """Which planned update a request carries: its ``seq`` in ``metadata``, else in the code
    interpreter's file id (``file-<run>-<seq>``, updates that set ``tool_resources`` only)."""
    if not isinstance(document, dict):
        return None
    metadata = document.get("metadata")
    if isinstance(metadata, dict) and "seq" in metadata:
        return str(metadata["seq"])
    tool_resources = document.get("tool_resources")
    code = tool_resources.get("code_interpreter") if isinstance(tool_resources, dict) else None
    file_ids = code.get("file_ids") if isinstance(code, dict) else None
    if isinstance(file_ids, list) and file_ids:
        return str(file_ids[0]).rsplit("-", 1)[-1]
    return None
