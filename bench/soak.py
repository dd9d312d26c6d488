"""Soak: thousands of updates through moto SQS, the real handler and a Portkey stand-in that fails.

``python -m bench.soak --updates 20000`` (a bounded variant runs in CI as ``tests/tooling/test_soak.py``).

What runs, all on this machine:

* moto in server mode (SQS, Secrets Manager): a source queue with a redrive policy to a DLQ;
* :class:`FaultyStandIn`, the project's Portkey stand-in with faults injected into ~30 % of the
  requests (seeded, and decided per update attempt so a run is reproducible whatever the
  scheduling): 429 with and without ``Retry-After``, 500/502/503, read timeouts, connections
  dropped before and in the middle of the answer, answers just under the read timeout; and a
  fixed set of threads that always answer 404 (a thread gone upstream);
* several worker **processes**, each one "warm Lambda container": the real ``lambda_handler``
  driven by :class:`devstack.poller.SqsPoller` (receive up to 10, invoke, delete what succeeded,
  leave ``batchItemFailures`` to reappear after the visibility timeout). Processes, not threads,
  because a container runs one invocation at a time (the handler's batch processor is a module
  singleton), exactly like Lambda's event source mapping scaling out over containers;
* a producer that keeps the queue about ``queue_depth`` deep with ``SendMessageBatch`` (moto's
  receive and send cost grows with the queue's depth, a real queue's does not).

Then it settles the books: every message id must be in exactly one place, applied or in the DLQ.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import multiprocessing
import os
import random
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.context import ForkServerContext, ForkServerProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3

from devstack.local_aws import create_resources, function_environment, moto_server
from devstack.poller import SqsPoller
from devstack.portkey_standin import TRACE_ID_HEADER, PortkeyStandIn, Reply

if TYPE_CHECKING:
    from multiprocessing.queues import Queue as MpQueue
    from multiprocessing.synchronize import Event as MpEvent
    from multiprocessing.synchronize import Lock as MpLock
    from multiprocessing.synchronize import Semaphore as MpSemaphore

    from devstack.portkey_standin import _Exchange, _Handler

ROOT = Path(__file__).resolve().parent.parent
FIGURES_FILE = ROOT / "build" / "soak-figures.txt"
LOG_DIR = ROOT / "build" / "soak"
SECRET = {"api_key": "pk-soak-api-key", "virtual_key": "vk-soak"}

# Fault kinds and their relative weights among the injected faults. The slow ones (a Retry-After of
# one second, a read timeout, an answer just under the timeout) are rarer: every batch waits for its
# slowest lane, and they are the ones that cost wall time.
FAULT_WEIGHTS: Mapping[str, float] = {
    "429 Retry-After: 0": 3.0,
    "429 Retry-After: 1": 1.0,
    "429 without Retry-After": 3.0,
    "500": 2.0,
    "502": 2.0,
    "503": 2.0,
    "read timeout": 1.5,
    "dropped before the answer": 2.0,
    "dropped mid-answer": 2.0,
    "slow answer under the timeout": 1.5,
}
# Faults after which the stand-in has written the update although the function saw no answer.
SILENT_WRITE_FAULTS = frozenset({"dropped mid-answer", "read timeout"})


@dataclass(frozen=True)
class SoakConfig:
    updates: int = 2000
    threads: int = 300
    gone_threads: int = 5
    fault_rate: float = 0.3
    seed: int = 20261125
    fifo: bool = False
    workers: int = 8
    batch_size: int = 10
    max_concurrency: int = 16
    max_attempts: int = 3
    max_receive_count: int = 5
    read_timeout_s: float = 0.5
    # Each invocation gets this much time (LocalContext). The function dead-letters only while it
    # has thread_updater.aws.WORST_CASE_CALL_S left, so this must be well above that. The source
    # queue's visibility timeout must exceed it (the template's is 660 s for 60 s), or a message
    # still being processed is delivered to a second container; a handed-back message reappears
    # after handback_visibility_s (see _SerializedPoller._settle).
    function_timeout_s: float = 12.0
    visibility_timeout_s: int = 15
    handback_visibility_s: int = 1
    window_s: float = 0.0
    queue_depth: int = 100
    max_seconds: float = 150.0
    # A request that timed out on the client may still be applied upstream, later. True models that
    # honestly; the FIFO run turns it off because no client can order a write it no longer sees
    # (Modify Thread has no conditional update), see the test.
    late_timeout_writes: bool = True
    label: str = "standard"

    def thread_ids(self) -> list[str]:
        return [f"soak_{index:04d}" for index in range(self.threads)]

    def gone_thread_ids(self) -> list[str]:
        return [f"soak_{index:04d}" for index in range(0, self.threads, self.threads // self.gone_threads)][
            : self.gone_threads
        ]


# --------------------------------------------------------------------------- the failing Portkey


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
        self._kinds = list(FAULT_WEIGHTS)
        self._weights = list(FAULT_WEIGHTS.values())

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
        document = exchange.parsed if isinstance(exchange.parsed, dict) else {}
        metadata = document.get("metadata") if isinstance(document.get("metadata"), dict) else {}
        seq = str(metadata.get("seq", exchange.sequence)) if isinstance(metadata, dict) else ""
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
            if self.config.late_timeout_writes:
                return Reply(status=200, delay=timeout + 0.25)
            return Reply(status=504, delay=timeout + 0.25, apply=False)
        if kind == "dropped before the answer":
            return Reply(drop="before_response")
        if kind == "dropped mid-answer":
            return Reply(drop="mid_response")  # applies the update, then cuts the body in half
        return Reply(delay=timeout * 0.6)  # slow answer, still inside the read timeout


# --------------------------------------------------------------------------- worker processes


@dataclass
class Invocation:
    records: list[str]
    failed: list[str]
    error: str | None = None


@dataclass
class WorkerResult:
    index: int
    invocations: list[Invocation] = field(default_factory=list)
    receives_by_message: dict[str, int] = field(default_factory=dict)
    handed_back: int = 0
    timed_out: bool = False
    error: str | None = None
    longest_hold_s: float = 0.0  # from a receive to the delete of that batch


class _SerializedPoller(SqsPoller):
    """moto's ReceiveMessage is not atomic across concurrent callers (two could get the same message,
    which real SQS avoids within the visibility timeout): containers take turns to receive."""

    def __init__(self, *args: Any, receive_lock: MpLock, handback_visibility_s: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._receive_lock = receive_lock
        self._handback_visibility_s = handback_visibility_s
        self._received_at = 0.0
        self.longest_hold_s = 0.0

    def _receive_batch(self) -> Any:
        with self._receive_lock:
            self._received_at = time.monotonic()
            return super()._receive_batch()

    def _settle(self, messages: list[Any], response: Any) -> None:
        """Delete what succeeded (the poller), then schedule what was handed back.

        The visibility timeout plays two roles. While a batch is being processed it must outlast the
        invocation (the queue's own value, as in the template); once the function has handed a
        message back, it only delays the retry, and the harness shortens that to
        ``handback_visibility_s`` so a run stays short. The function is not involved either way.

        FIFO: moto delivers a group's handed-back messages out of order when several of them turn
        visible together (its scan skips the first while the later ones are still "in flight", then
        releases the group at the last one and delivers that); real SQS keeps the group's order. So
        every handed-back message after the first of its group turns visible at once, and the first
        one later: moto's scan then releases them behind the first one, in order.
        """
        super()._settle(messages, response)
        if not isinstance(response, Mapping):
            return
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        first_of_group: set[str] = set()
        entries: list[Any] = []
        for message in messages:
            if message["MessageId"] not in failed:
                continue
            group = message.get("Attributes", {}).get("MessageGroupId")
            later_in_group = group is not None and group in first_of_group
            if group is not None:
                first_of_group.add(group)
            entries.append(
                {
                    "Id": str(len(entries)),
                    "ReceiptHandle": message["ReceiptHandle"],
                    "VisibilityTimeout": 0 if later_in_group else self._handback_visibility_s,
                }
            )
        for start in range(0, len(entries), 10):
            self._sqs.change_message_visibility_batch(
                QueueUrl=self.queue_url, Entries=entries[start : start + 10]
            )

    def poll_once(self) -> int:
        handled = super().poll_once()
        if handled:
            self.longest_hold_s = max(self.longest_hold_s, time.monotonic() - self._received_at)
        return handled


_FUNCTION_ENV_PREFIXES = ("AWS_", "PORTKEY_", "POWERTOOLS_", "DLQ_", "MAX_")


def _worker(
    index: int,
    env: dict[str, str],
    config: SoakConfig,
    queue_url: str,
    log_path: str,
    receive_lock: MpLock,
    room: MpSemaphore,
    producer_done: MpEvent,
    stop: MpEvent,
    results: MpQueue[WorkerResult],
) -> None:
    """One warm container: poll, invoke the real handler, settle; until the queue is empty."""
    result = WorkerResult(index)
    try:
        log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log_fd, 1)  # the function's JSON logs and EMF metrics, like CloudWatch Logs
        for name in [name for name in os.environ if name.startswith(_FUNCTION_ENV_PREFIXES)]:
            del os.environ[name]  # only this run's configuration (the fork server may be older)
        os.environ.update(env)
        from handler import lambda_handler

        def invoke(event: dict[str, Any], context: Any) -> Any:
            records = [str(record["messageId"]) for record in event["Records"]]
            try:
                response = lambda_handler(event, context)
            except Exception as error:
                result.invocations.append(Invocation(records, records, f"{type(error).__name__}: {error}"))
                raise
            failed = [str(item["itemIdentifier"]) for item in response["batchItemFailures"]]
            result.invocations.append(Invocation(records, failed))
            for _ in range(len(records) - len(set(failed))):
                room.release()  # these leave the queue: the producer may send as many
            return response

        poller = _SerializedPoller(
            queue_url,
            invoke,
            batch_size=config.batch_size,
            window_s=config.window_s,
            function_timeout_s=config.function_timeout_s,
            receive_lock=receive_lock,
            handback_visibility_s=config.handback_visibility_s,
        )
        ends = time.monotonic() + config.max_seconds
        while not stop.is_set():
            if time.monotonic() >= ends:
                result.timed_out = True
                break
            if poller.poll_once():
                continue
            if producer_done.is_set() and poller.in_queue() == 0:
                break
            # Nothing visible: what is left waits out its visibility timeout. Poll again shortly
            # (bounded by the loop's deadline; stop() ends the wait at once).
            stop.wait(0.1)
        result.receives_by_message = dict(poller.stats.receives_by_message)
        result.handed_back = poller.stats.handed_back
        result.longest_hold_s = poller.longest_hold_s
    except BaseException as error:  # reported to the parent, which fails the run
        result.error = f"{type(error).__name__}: {error}"
    finally:
        results.put(result)


# --------------------------------------------------------------------------- the run


@dataclass
class SoakReport:
    config: SoakConfig
    figures: dict[str, Any]
    problems: list[str]
    buckets: dict[str, str]  # message id -> applied | rejected | redriven
    sent: dict[str, str]  # message id -> body
    final_threads: dict[str, dict[str, Any] | None]
    # message ids the stand-in stored although the function saw no answer (it retried them)
    written_without_answer: set[str]

    def summary(self) -> str:
        lines = [f"[{self.config.label}]"]
        for name, value in self.figures.items():
            lines.append(f"  {name}: {value}")
        lines.append(f"  problems: {len(self.problems)}")
        lines += [f"    - {problem}" for problem in self.problems[:20]]
        return "\n".join(lines)


def _bodies(config: SoakConfig) -> list[tuple[str, str]]:
    """(thread id, body) per update; seeded spread of several updates per thread, unique bodies."""
    rng = random.Random(config.seed)
    threads = config.thread_ids()
    run = uuid.uuid4().hex[:8]
    plan = []
    for seq in range(config.updates):
        thread_id = threads[seq % len(threads)] if seq < len(threads) else rng.choice(threads)
        body = {"thread_id": thread_id, "metadata": {"seq": str(seq), "run": run}}
        plan.append((thread_id, json.dumps(body, separators=(",", ":"))))
    return plan


class _Producer:
    """Sends the planned updates with SendMessageBatch, keeping the queue about ``queue_depth`` deep."""

    def __init__(self, config: SoakConfig, queue_url: str, room: MpSemaphore) -> None:
        self.config = config
        self.queue_url = queue_url
        self.room = room
        self.sqs = boto3.client("sqs")
        self.sent: dict[str, str] = {}
        self.order: list[str] = []

    def _depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def _make_room(self, count: int, ends: float) -> None:
        for _ in range(count):
            while not self.room.acquire(timeout=1.0):
                # Redriven messages leave the queue without a delete (no permit comes back for them).
                if self._depth() <= self.config.queue_depth - count or time.monotonic() >= ends:
                    return

    def run(self, plan: Sequence[tuple[str, str]], ends: float) -> None:
        for start in range(0, len(plan), 10):
            chunk = plan[start : start + 10]
            self._make_room(len(chunk), ends)
            entries: list[Any] = []
            for position, (thread_id, body) in enumerate(chunk):
                entry: dict[str, str] = {"Id": str(position), "MessageBody": body}
                if self.config.fifo:  # as producers must: the group is the thread, one dedup id per update
                    entry["MessageGroupId"] = thread_id
                    entry["MessageDeduplicationId"] = uuid.uuid4().hex
                entries.append(entry)
            answer = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {answer['Failed']}")
            for done in sorted(answer["Successful"], key=lambda item: int(item["Id"])):
                self.sent[done["MessageId"]] = chunk[int(done["Id"])][1]
                self.order.append(done["MessageId"])


def _read_queue(queue_url: str, limit: int) -> list[str]:
    """Every body in the queue (received and deleted, so FIFO groups do not hold the rest back)."""
    sqs = boto3.client("sqs")
    bodies: list[str] = []
    for _ in range(limit // 10 + 2):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600).get(
            "Messages", []
        )
        if not messages:
            break
        bodies += [message["Body"] for message in messages]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages)
            ],
        )
    return bodies


def _function_log_figures(paths: Sequence[Path]) -> dict[str, int]:
    """Retries inside invocations and Retry-After waits, from the function's own logs and metrics."""
    figures = collections.Counter[str]()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if not isinstance(document, dict):
                    continue
                attempts = document.get("attempts")
                if isinstance(attempts, int) and str(document.get("message", "")).startswith("update "):
                    figures["http retries inside invocations"] += max(0, attempts - 1)
                    figures[f"outcome lines: {document['message']}"] += 1
                waits = document.get("RetryAfterWaits")
                if isinstance(waits, list):
                    figures["Retry-After waits (EMF)"] += int(sum(waits))
    return dict(figures)


@contextlib.contextmanager
def _workers(
    context: ForkServerContext,
    count: int,
    target: Callable[..., None],
    args: Callable[[int], tuple[Any, ...]],
) -> Iterator[list[ForkServerProcess]]:
    processes = [context.Process(target=target, args=args(index), daemon=True) for index in range(count)]
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _stop_forkserver() -> None:
    """The fork server would otherwise live on until this process exits. ``_stop`` is the standard
    library's own (test) hook; without it the server still ends with this process."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if callable(stop):
        stop()


def run_soak(config: SoakConfig, endpoint: str) -> SoakReport:
    """One soak run against the moto server at ``endpoint`` (``AWS_ENDPOINT_URL`` already set)."""
    started = time.monotonic()
    ends = started + config.max_seconds
    resources = create_resources(
        endpoint,
        SECRET,
        fifo=config.fifo,
        max_receive_count=config.max_receive_count,
        visibility_timeout_s=config.visibility_timeout_s,
    )
    gone = set(config.gone_thread_ids())
    plan = _bodies(config)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_paths = [LOG_DIR / f"{config.label}-worker{index}.log" for index in range(config.workers)]
    # Workers fork from a server process that imported the function's dependencies once (a fresh
    # interpreter per worker would spend seconds importing boto3 and pydantic on every one).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["boto3", "botocore", "pydantic", "aws_lambda_powertools", "urllib3"])
    receive_lock = context.Lock()
    room = context.Semaphore(config.queue_depth)
    producer_done = context.Event()
    stop = context.Event()
    results: MpQueue[WorkerResult] = context.Queue()

    standin = FaultyStandIn(config)
    with standin:
        for thread_id in gone:
            standin.always(
                thread_id,
                Reply(status=404, body={"error": {"message": f"No thread found with id '{thread_id}'."}}),
            )
        env = {
            **{name: value for name, value in os.environ.items() if name.startswith("AWS_")},
            **function_environment(
                resources,
                standin.url,
                MAX_ATTEMPTS=str(config.max_attempts),
                MAX_CONCURRENCY=str(config.max_concurrency),
                PORTKEY_READ_TIMEOUT=str(config.read_timeout_s),
                PORTKEY_CONNECT_TIMEOUT="1",
            ),
        }
        producer = _Producer(config, resources.queue_url, room)
        worker_results: list[WorkerResult] = []

        def args(index: int) -> tuple[Any, ...]:
            return (
                index,
                env,
                config,
                resources.queue_url,
                str(log_paths[index]),
                receive_lock,
                room,
                producer_done,
                stop,
                results,
            )

        try:
            with _workers(context, config.workers, _worker, args):
                try:
                    producer.run(plan, ends)
                    producer_done.set()
                    for _ in range(config.workers):
                        worker_results.append(results.get(timeout=max(1.0, ends - time.monotonic()) + 30))
                finally:
                    stop.set()
        finally:
            _stop_forkserver()
        drained_at = time.monotonic()
        letters = _read_queue(resources.dlq_url, limit=config.updates)
        report = _settle(config, producer, standin, worker_results, letters, gone)
    report.figures["wall time (s)"] = round(time.monotonic() - started, 1)
    report.figures["time to drain the queue (s)"] = round(drained_at - started, 1)
    report.figures.update(_function_log_figures(log_paths))
    return report


def _settle(
    config: SoakConfig,
    producer: _Producer,
    standin: FaultyStandIn,
    worker_results: Sequence[WorkerResult],
    letters: Sequence[str],
    gone: set[str],
) -> SoakReport:
    """The books: where every message id ended up, and everything that contradicts "exactly once"."""
    sent, problems = producer.sent, []
    if len(sent) != config.updates:
        problems.append(f"sent {len(sent)} of {config.updates} updates")
    by_body = {body: message_id for message_id, body in sent.items()}
    thread_of = {message_id: json.loads(body)["thread_id"] for message_id, body in sent.items()}
    seq_of = {message_id: int(json.loads(body)["metadata"]["seq"]) for message_id, body in sent.items()}

    longest_hold = max((result.longest_hold_s for result in worker_results), default=0.0)
    if longest_hold >= config.visibility_timeout_s:
        # Another container may then have received the same message: at-least-once delivery that
        # the deployment avoids with VisibilityTimeout >= 6 x the function timeout. The run is void.
        problems.append(
            f"a batch was held {longest_hold:.1f} s, longer than the visibility timeout "
            f"({config.visibility_timeout_s} s): the machine is too loaded for this run"
        )
    for result in worker_results:
        if result.error:
            problems.append(f"worker {result.index} failed: {result.error}")
        if result.timed_out:
            problems.append(f"worker {result.index} stopped at the time bound with messages left")
    # "Acknowledged": the function reported the record as done, so the poller deleted it. That is
    # either "applied" (Portkey answered 2xx) or "dead-lettered by the function" (an envelope).
    acknowledged = collections.Counter[str]()
    handler_errors = []
    for result in worker_results:
        for invocation in result.invocations:
            if invocation.error:
                handler_errors.append(invocation.error)
            acknowledged.update(set(invocation.records) - set(invocation.failed))
    problems += [f"handler raised: {error}" for error in handler_errors[:5]]

    envelopes: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    redriven = collections.Counter[str]()
    for text in letters:
        document: Any = None
        with contextlib.suppress(ValueError):
            document = json.loads(text)
        if isinstance(document, dict) and "category" in document and "payload" in document:
            envelopes[str(document.get("message_id"))].append(document)
        elif text in by_body:  # the raw body, moved by the redrive policy after maxReceiveCount
            redriven[by_body[text]] += 1
        else:
            problems.append(f"unexpected DLQ message: {text[:120]}")

    answered_2xx = collections.Counter[str]()
    for request in standin.requests:
        if 200 <= request.status < 300:
            answered_2xx[request.headers.get(TRACE_ID_HEADER, "")] += 1

    buckets: dict[str, str] = {}
    for message_id, body in sent.items():
        acks, letters_for, raws = (
            acknowledged[message_id],
            envelopes.get(message_id, []),
            redriven[message_id],
        )
        places = (1 if acks and not letters_for else 0) + len(letters_for) + raws
        if acks > 1:
            problems.append(f"{message_id}: acknowledged {acks} times")
        if places != 1:
            problems.append(
                f"{message_id}: in {places} places (acknowledged={acks}, envelopes={len(letters_for)}, "
                f"redriven={raws})"
            )
            continue
        if letters_for:
            [letter] = letters_for
            buckets[message_id] = "rejected"
            if not acks:
                problems.append(f"{message_id}: dead-lettered but handed back too")
            if thread_of[message_id] not in gone:
                problems.append(f"{message_id}: dead-lettered although its thread exists: {letter['error']}")
            if (letter["category"], letter["status"], letter["payload"]) != ("rejected", 404, body):
                problems.append(f"{message_id}: unexpected envelope {letter}")
        elif raws:
            buckets[message_id] = "redriven"
            receives = sum(result.receives_by_message.get(message_id, 0) for result in worker_results)
            if receives < config.max_receive_count:
                problems.append(f"{message_id}: redriven after only {receives} receives")
        else:
            buckets[message_id] = "applied"
            if not answered_2xx[message_id]:
                problems.append(f"{message_id}: acknowledged as applied, but Portkey never answered 2xx")
            if thread_of[message_id] in gone:
                problems.append(f"{message_id}: applied to a thread that always answers 404")

    final_threads = {thread_id: standin.thread(thread_id) for thread_id in config.thread_ids()}
    if config.fifo:
        problems += _fifo_problems(config, sent, buckets, standin, final_threads, thread_of, seq_of, gone)

    receive_counts = [sum(r.receives_by_message.get(m, 0) for r in worker_results) for m in sent]
    longest_hold = max((result.longest_hold_s for result in worker_results), default=0.0)
    counts = collections.Counter(buckets.values())
    silent = sum(standin.silent_writes.values())
    figures: dict[str, Any] = {
        "queue": "FIFO" if config.fifo else "standard",
        "messages": len(sent),
        "threads": config.threads,
        "threads that always 404": len(gone),
        "worker processes (containers)": config.workers,
        "invocations": sum(len(result.invocations) for result in worker_results),
        "longest receive-to-delete (s)": round(longest_hold, 2),
        "HTTP requests": len(standin.requests),
        "faults injected": sum(standin.faults.values()),
        "fault share of requests": round(sum(standin.faults.values()) / max(1, len(standin.requests)), 3),
        "faults by kind": dict(sorted(standin.faults.items())),
        "writes upstream without an answer (mid-answer drops, late timeouts)": silent,
        "handed back (batchItemFailures)": sum(result.handed_back for result in worker_results),
        "redeliveries (receives beyond the first)": sum(max(0, count - 1) for count in receive_counts),
        "applied": counts["applied"],
        "DLQ: rejected 404 envelopes": counts["rejected"],
        "DLQ: redriven raw bodies": counts["redriven"],
        "DLQ total": counts["rejected"] + counts["redriven"],
        "missing": len(sent) - len(buckets),
    }
    return SoakReport(config, figures, problems, buckets, sent, final_threads, set(standin.silent_writes))


def _fifo_problems(
    config: SoakConfig,
    sent: Mapping[str, str],
    buckets: Mapping[str, str],
    standin: FaultyStandIn,
    final_threads: Mapping[str, dict[str, Any] | None],
    thread_of: Mapping[str, str],
    seq_of: Mapping[str, int],
    gone: set[str],
) -> list[str]:
    """Per thread: writes arrive in send order, and the final state is the last update written."""
    problems = []
    written: dict[str, list[int]] = collections.defaultdict(list)  # thread -> seqs of 2xx writes
    for request in standin.requests:
        trace_id = request.headers.get(TRACE_ID_HEADER, "")
        if 200 <= request.status < 300 and trace_id in seq_of:
            written[thread_of[trace_id]].append(seq_of[trace_id])
    for thread_id, seqs in written.items():
        if seqs != sorted(seqs):
            problems.append(f"{thread_id}: writes out of send order: {seqs}")
    for thread_id in config.thread_ids():
        if thread_id in gone:
            continue
        ids = [message_id for message_id in sent if thread_of[message_id] == thread_id]
        reached = [m for m in ids if buckets.get(m) == "applied" or standin.silent_writes[m]]
        if not reached:
            continue
        last = max(reached, key=lambda message_id: seq_of[message_id])
        expected = json.loads(sent[last])["metadata"]
        stored = final_threads.get(thread_id)
        actual = stored["metadata"] if stored else None
        if actual != expected:
            problems.append(f"{thread_id}: final metadata {actual} != last written update {expected}")
    return problems


def write_figures(report: SoakReport, path: Path = FIGURES_FILE) -> None:
    """Replace this run's section of the figures file (one section per label)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sections: dict[str, str] = {}
    if path.exists():
        current: str | None = None
        for line in path.read_text().splitlines():
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1]
                sections[current] = ""
            elif current is not None:
                sections[current] += line + "\n"
    text = report.summary()
    sections[report.config.label] = text.split("\n", 1)[1] + "\n"
    path.write_text("".join(f"[{label}]\n{body}" for label, body in sections.items()))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.split("\n\n")[0])
    defaults = SoakConfig()
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=3000)
    parser.add_argument("--gone-threads", type=int, default=defaults.gone_threads)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--fifo", action="store_true", help="a FIFO queue, MessageGroupId = thread_id")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    args = parser.parse_args(argv)
    if str(ROOT / "src") not in sys.path:
        sys.path.insert(0, str(ROOT / "src"))  # the handler's CodeUri; spawned workers inherit sys.path
    config = SoakConfig(
        updates=args.updates,
        threads=args.threads,
        gone_threads=args.gone_threads,
        fault_rate=args.fault_rate,
        seed=args.seed,
        workers=args.workers,
        fifo=args.fifo,
        late_timeout_writes=not args.fifo,
        max_seconds=args.max_seconds,
        label=f"bench-{'fifo' if args.fifo else 'standard'}-{args.updates}",
    )
    with moto_server() as endpoint:
        report = run_soak(config, endpoint)
    print(report.summary())
    write_figures(report)
    print(f"figures: {FIGURES_FILE.relative_to(ROOT)}; function logs: {LOG_DIR.relative_to(ROOT)}/")
    return 1 if report.problems else 0


if __name__ == "__main__":
    # Through the package module, so the worker processes unpickle the same classes.
    from bench.soak import main as package_main

    raise SystemExit(package_main())
