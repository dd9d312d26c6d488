"""What the benchmark compares: four ways of applying a batch of Modify Thread updates.

1. ``sequential urllib3`` - one keep-alive connection, one request after another (the naive floor);
2. ``Portkey SDK handler`` - ``bench/sdk_handler.py``, the obvious Lambda written with
   ``portkey_ai.Portkey().beta.threads.update`` one record at a time;
3. ``urllib3 x16`` - 16 requests in flight (``ThreadPoolExecutor`` over one ``PoolManager``), the
   practical limit for ``MAX_CONCURRENCY=16``;
4. ``our handler`` - ``handler.lambda_handler`` with an SQS event (distinct thread ids per record).

Plus :class:`Control`, the latency server's control endpoints every timed run reads back.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

import urllib3

from bench.scenarios import CONCURRENCY
from devstack.lambda_events import LocalContext, sqs_event

SECRET = {"api_key": "pk-bench-api-key", "virtual_key": "vk-bench-virtual-key"}
INVOKE_TIMEOUT_S = 900.0  # Lambda's maximum; the template's 60 s would cut the slow baselines

SEQ = "sequential urllib3"
SDK = "Portkey SDK handler"
RAW16 = "urllib3 x16"
OURS = "our handler"
CONTENDERS = (SEQ, SDK, RAW16, OURS)
SEQUENTIAL = (SEQ, SDK)  # one request at a time: skipped in --quick when they would take long


class Control:
    """The latency server's control endpoints."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._pool = urllib3.PoolManager(maxsize=1, retries=False, timeout=10.0)

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self._pool.request(method, f"{self._root}{path}", json=body)
        if response.status != 200:
            raise RuntimeError(f"latency server {path}: HTTP {response.status}")
        document: dict[str, Any] = response.json()
        return document

    def set_latency(self, seconds: float) -> None:
        self._call("POST", "/_control/latency", {"seconds": seconds})

    def reset(self) -> None:
        self._call("POST", "/_control/reset")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_control/stats")

    def close(self) -> None:
        self._pool.clear()


def raw_headers(trace_id: str) -> dict[str, str]:
    """What our client sends: the secret's headers plus the fixed ones."""
    return {
        "x-portkey-api-key": SECRET["api_key"],
        "x-portkey-virtual-key": SECRET["virtual_key"],
        "Content-Type": "application/json",
        "OpenAI-Beta": "assistants=v2",
        "x-portkey-trace-id": trace_id,
    }


def update_bodies(tag: str, count: int, threads: int | None = None) -> list[dict[str, Any]]:
    """``count`` updates over distinct thread ids (or ``threads`` ids, round-robin)."""
    spread = threads or count
    return [
        {"thread_id": f"thread_{tag}_{index % spread}", "metadata": {"seq": str(index), "source": "bench"}}
        for index in range(count)
    ]


class Contender:
    name = ""

    def prepare(self, tag: str, count: int) -> Any:
        raise NotImplementedError

    def call(self, prepared: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the contender holds (pools, executors)."""


class SequentialRaw(Contender):
    name = SEQ

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._pool = urllib3.PoolManager(maxsize=1, block=True, retries=False, timeout=30.0)

    def prepare(self, tag: str, count: int) -> Any:
        return [
            (
                f"{self._base_url}/threads/{body['thread_id']}",
                json.dumps({"metadata": body["metadata"]}, separators=(",", ":")).encode(),
                raw_headers(f"{tag}-{index}"),
            )
            for index, body in enumerate(update_bodies(tag, count))
        ]

    def post(self, request: tuple[str, bytes, dict[str, str]]) -> None:
        url, body, headers = request
        response = self._pool.request("POST", url, body=body, headers=headers, redirect=False)
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}")

    def call(self, prepared: Any) -> None:
        for request in prepared:
            self.post(request)

    def close(self) -> None:
        self._pool.clear()


class ConcurrentRaw(SequentialRaw):
    name = RAW16

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self._pool = urllib3.PoolManager(maxsize=CONCURRENCY, block=True, retries=False, timeout=30.0)
        self._executor = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="raw")

    def call(self, prepared: Any) -> None:
        for _ in self._executor.map(self.post, prepared):
            pass

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        super().close()


class HandlerContender(Contender):
    """A Lambda handler fed an SQS event; its stdout (logs, EMF metrics) goes to /dev/null."""

    def __init__(self, name: str, handler: Callable[[dict[str, Any], Any], Any], sink: TextIO) -> None:
        self.name = name
        self._handler = handler
        self._sink = sink

    def prepare(self, tag: str, count: int) -> Any:
        return sqs_event(update_bodies(tag, count))

    def call(self, prepared: Any) -> None:
        with contextlib.redirect_stdout(self._sink):
            response = self._handler(prepared, LocalContext(timeout_s=INVOKE_TIMEOUT_S))
        failures = response.get("batchItemFailures") if isinstance(response, dict) else None
        if failures:
            raise RuntimeError(f"{self.name}: {len(failures)} records failed")


def load_handlers(sink: TextIO) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Import both handlers with stdout on ``sink``: Powertools' Logger keeps the stdout it sees."""
    with contextlib.redirect_stdout(sink):
        from bench.sdk_handler import lambda_handler as sdk
        from handler import lambda_handler as ours
    return ours, sdk


def all_contenders(base_url: str, sink: TextIO) -> list[Contender]:
    """The four contenders, in table order, against the latency server at ``base_url``."""
    ours_handler, sdk_handler = load_handlers(sink)
    return [
        SequentialRaw(base_url),
        HandlerContender(SDK, sdk_handler, sink),
        ConcurrentRaw(base_url),
        HandlerContender(OURS, ours_handler, sink),
    ]
