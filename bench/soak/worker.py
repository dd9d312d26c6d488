"""One worker process = one warm Lambda container: poll, invoke the real handler, settle.

Processes, not threads, because a container runs one invocation at a time (the handler's batch
processor is a module singleton), exactly like Lambda's event source mapping scaling out over
containers.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from bench.soak.config import SoakConfig
from devstack.poller import SqsPoller

if TYPE_CHECKING:
    from multiprocessing.queues import Queue as MpQueue
    from multiprocessing.synchronize import Event as MpEvent
    from multiprocessing.synchronize import Lock as MpLock
    from multiprocessing.synchronize import Semaphore as MpSemaphore


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
    """moto's queue is not safe for concurrent callers: two ReceiveMessage calls could get the same
    message (real SQS avoids that within the visibility timeout), and a DeleteMessageBatch rebuilds the
    message list, so two concurrent deletes (or a delete and a send) can put back what the other just
    deleted, and the message comes back once its visibility timeout ends. Containers (and the producer)
    take turns with the queue lock for receives, deletes and sends."""

    def __init__(
        self, *args: Any, queue_lock: MpLock, max_handback_delay_s: int, log_path: str, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._queue_lock = queue_lock
        self._max_handback_delay_s = max_handback_delay_s
        self._retry_delays = RetryDelays(log_path)
        self._received_at = 0.0
        self.longest_hold_s = 0.0

    def _receive_batch(self) -> Any:
        with self._queue_lock:
            self._received_at = time.monotonic()
            return super()._receive_batch()

    def _settle(self, messages: list[Any], response: Any) -> None:
        """Delete what succeeded (the poller), then schedule what was handed back.

        The function sets each handed-back record's visibility to its own retry delay (a transient
        backoff of up to 300 s, the rest of another invocation's lease on the thread, or the heal
        delay after an unknown outcome) and logs it as ``retry_delay_s``. The harness reads that
        line and shortens a longer delay to ``max_handback_delay_s`` so a run stays short; that
        bound is at least the heal delay (``SoakConfig`` checks), so a record handed back after an
        unknown outcome still returns only once its thread's heal is due, as in production. A record
        without a delay of its own (behind a retried update in its lane, or after a configuration
        error) would wait out the queue's visibility timeout; the harness gives it the bound too.

        FIFO: moto delivers a group's handed-back messages out of order when several of them turn
        visible together (its scan skips the first while the later ones are still "in flight", then
        releases the group at the last one and delivers that); real SQS keeps the group's order. So
        every handed-back message after the first of its group turns visible at once, and the first
        one later: moto's scan then releases them behind the first one, in order.
        """
        with self._queue_lock:
            super()._settle(messages, response)
        if not isinstance(response, Mapping):
            return
        failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        delays = self._retry_delays.read()
        first_of_group: set[str] = set()
        entries: list[Any] = []
        for message in messages:
            if message["MessageId"] not in failed:
                continue
            group = message.get("Attributes", {}).get("MessageGroupId")
            later_in_group = group is not None and group in first_of_group
            if group is not None:
                first_of_group.add(group)
            own = delays.get(message["MessageId"])
            if own is not None and own <= self._max_handback_delay_s and not later_in_group:
                # The function's own change stands. Setting it again from now would race the
                # redelivery: should this container run late, the message may already be back with
                # another container, and moto honours a stale receipt handle, so a second change
                # would release it a second time (and it would be applied twice).
                continue
            delay = self._max_handback_delay_s if own is None else min(own, self._max_handback_delay_s)
            entries.append(
                {
                    "Id": str(len(entries)),
                    "ReceiptHandle": message["ReceiptHandle"],
                    "VisibilityTimeout": 0 if later_in_group else math.ceil(delay),
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


class RetryDelays:
    """The ``retry_delay_s`` of each handed-back record, from the function's outcome lines in this
    container's log (its stdout, as CloudWatch Logs would hold it), read as they are written."""

    def __init__(self, log_path: str) -> None:
        self._log_path = log_path
        self._offset = 0

    def read(self) -> dict[str, float]:
        """message id -> retry delay, from the lines written since the last call."""
        sys.stdout.flush()
        with open(self._log_path, "rb") as log:
            log.seek(self._offset)
            text = log.read()
        complete = text[: text.rfind(b"\n") + 1]
        self._offset += len(complete)
        delays: dict[str, float] = {}
        for line in complete.splitlines():
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if isinstance(document, dict) and isinstance(document.get("retry_delay_s"), int | float):
                    delays[str(document.get("message_id"))] = float(document["retry_delay_s"])
        return delays


_FUNCTION_ENV_PREFIXES = ("AWS_", "PORTKEY_", "POWERTOOLS_", "DLQ_", "MAX_", "THREAD_", "LATE_WRITE_")


def container(
    index: int,
    env: dict[str, str],
    config: SoakConfig,
    queue_url: str,
    log_path: str,
    queue_lock: MpLock,
    room: MpSemaphore,
    producer_done: MpEvent,
    stop: MpEvent,
    results: MpQueue[WorkerResult],
) -> None:
    """One warm container: poll, invoke the real handler, settle; until the queue is empty."""
    result = WorkerResult(index)
    try:
        _enter_container(env, log_path)
        poller = _SerializedPoller(
            queue_url,
            _invoker(result, room),
            batch_size=config.batch_size,
            window_s=config.window_s,
            function_timeout_s=config.function_timeout_s,
            queue_lock=queue_lock,
            max_handback_delay_s=config.max_handback_delay_s,
            log_path=log_path,
        )
        _poll_until_drained(poller, config, producer_done, stop, result)
        result.receives_by_message = dict(poller.stats.receives_by_message)
        result.handed_back = poller.stats.handed_back
        result.longest_hold_s = poller.longest_hold_s
    except BaseException as error:  # reported to the parent, which fails the run
        result.error = f"{type(error).__name__}: {error}"
    finally:
        results.put(result)


def _enter_container(env: dict[str, str], log_path: str) -> None:
    """stdout to this container's log file, and only this run's function environment."""
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(log_fd, 1)  # the function's JSON logs and EMF metrics, like CloudWatch Logs
    for name in [name for name in os.environ if name.startswith(_FUNCTION_ENV_PREFIXES)]:
        del os.environ[name]  # only this run's configuration (the fork server may be older)
    os.environ.update(env)


def _invoker(result: WorkerResult, room: MpSemaphore) -> Callable[[dict[str, Any], Any], Any]:
    """The real handler, recording each invocation and giving the producer room for what left."""
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

    return invoke


def _poll_until_drained(
    poller: _SerializedPoller, config: SoakConfig, producer_done: MpEvent, stop: MpEvent, result: WorkerResult
) -> None:
    """Poll until the producer is done and the queue is empty, ``stop`` is set, or time is up."""
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
