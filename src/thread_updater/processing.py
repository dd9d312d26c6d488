"""Where every update ends up: applied, dead-lettered with a reason, or handed back for a retry.

A batch runs concurrently over a bounded set of workers while updates that share a lane
(the thread id, or the FIFO message group) run one after another in the order received.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from thread_updater.deadletter import Category, DeadLetter, DeadLetterQueue, Source
from thread_updater.errors import ConfigurationError, DeadLetterError
from thread_updater.models import (
    InvalidUpdate,
    ThreadUpdate,
    UpdateSqsRecord,
    parse_sqs_body,
    parse_update_document,
)
from thread_updater.observability import logger, metrics
from thread_updater.portkey import CallOutcome, CallResult, PortkeyClient
from thread_updater.settings import describe_validation_error


class Result(StrEnum):
    SUCCESS = "success"
    DEAD_LETTERED = "dead_lettered"
    RETRY = "retry"


@dataclass(frozen=True)
class Job:
    """One update to apply, or the reason it cannot be."""

    message_id: str
    source: Source
    payload: str  # the original SQS body, or the EventBridge event as JSON: what a replay needs
    lane: str | None  # updates sharing a lane keep their order; None runs independently
    update: ThreadUpdate | None = None
    invalid_reason: str | None = None

    @property
    def thread_id(self) -> str | None:
        return self.update.thread_id if self.update else None


@dataclass(frozen=True)
class Outcome:
    result: Result
    message_id: str
    thread_id: str | None
    status: int | None = None
    attempts: int = 0
    error: str | None = None
    category: Category | None = None
    trace_id: str | None = None
    duration_ms: float = 0.0
    latency_ms: float | None = None  # the last Portkey call's own time
    retry_after_waits: int = 0


class UpdateProcessor:
    """Applies jobs through Portkey, dead-letters the permanent failures, logs every outcome."""

    def __init__(
        self, client: PortkeyClient, dead_letters: DeadLetterQueue, executor: ThreadPoolExecutor, workers: int
    ) -> None:
        self._client = client
        self._dead_letters = dead_letters
        self._executor = executor
        self._workers = workers

    def process(self, job: Job, deadline: float) -> Outcome:
        """Raises ConfigurationError; every other failure becomes an Outcome."""
        started = time.monotonic()
        latency_ms: float | None = None
        retry_after_waits = 0
        if job.update is None:
            outcome = self._dead_letter(
                job, Category.VALIDATION, job.invalid_reason or "invalid", None, 0, None, deadline
            )
        else:
            call = self._client.modify_thread(
                job.update.thread_id, job.update.request_body(), trace_id=job.message_id, deadline=deadline
            )
            outcome = self._settle(job, call, deadline)
            latency_ms, retry_after_waits = call.latency_ms, call.retry_after_waits
        outcome = replace(
            outcome,
            latency_ms=latency_ms,
            retry_after_waits=retry_after_waits,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        _log(outcome)
        return outcome

    def _settle(self, job: Job, call: CallOutcome, deadline: float) -> Outcome:
        if call.result is CallResult.APPLIED:
            return Outcome(
                Result.SUCCESS,
                job.message_id,
                job.thread_id,
                call.status,
                call.attempts,
                trace_id=call.trace_id,
            )
        if call.result is CallResult.REJECTED:
            return self._dead_letter(
                job, Category.REJECTED, call.error or "", call.status, call.attempts, call.trace_id, deadline
            )
        return Outcome(
            Result.RETRY,
            job.message_id,
            job.thread_id,
            call.status,
            call.attempts,
            call.error,
            trace_id=call.trace_id,
        )

    def _dead_letter(
        self,
        job: Job,
        category: Category,
        error: str,
        status: int | None,
        attempts: int,
        trace_id: str | None,
        deadline: float,
    ) -> Outcome:
        thread_id = job.thread_id
        letter = DeadLetter(
            category, error, status, thread_id, job.source, job.message_id, job.payload, attempts
        )
        try:
            self._dead_letters.send(letter, deadline)
        except DeadLetterError as failure:
            return Outcome(
                Result.RETRY,
                job.message_id,
                thread_id,
                status,
                attempts,
                f"{category.value}: {error}; {failure}",
                category,
                trace_id,
            )
        return Outcome(
            Result.DEAD_LETTERED, job.message_id, thread_id, status, attempts, error, category, trace_id
        )

    def process_batch(self, jobs: Sequence[Job], deadline: float) -> list[Outcome]:
        """Run lanes concurrently, each lane in order; a lane stops at its first retry.

        A thread pool rather than asyncio: urllib3 is blocking, and a handful of threads over one
        pool is the simplest way to keep ``MAX_CONCURRENCY`` requests in flight. Workers pull lanes
        from a shared iterator, so memory stays flat however large the batch.
        """
        outcomes: list[Outcome | None] = [None] * len(jobs)
        lanes = _lanes(jobs)
        next_lane = lane_puller(lanes)
        stop = _BatchStop()

        def work() -> None:
            while (lane := next_lane()) is not None:
                self._run_lane(jobs, lane, outcomes, stop, deadline)

        futures = [self._executor.submit(work) for _ in range(min(self._workers, len(lanes)))]
        for future in futures:
            future.result()
        if stop.error is not None:
            report_configuration_error(stop.error, "unfinished updates go back to the queue")
        return [outcome for outcome in outcomes if outcome is not None]

    def _run_lane(
        self,
        jobs: Sequence[Job],
        lane: list[int],
        outcomes: list[Outcome | None],
        stop: _BatchStop,
        deadline: float,
    ) -> None:
        blocked_by: str | None = None
        for index in lane:
            job = jobs[index]
            if stop.error is not None:
                outcome = _not_attempted(job, f"configuration error: {stop.error}")
            elif blocked_by is not None:
                outcome = _not_attempted(job, f"an earlier update in lane {job.lane!r} must be retried first")
            else:
                try:
                    outcome = self.process(job, deadline)
                except ConfigurationError as error:
                    stop.error = stop.error or error
                    outcome = _not_attempted(job, f"configuration error: {error}")
                except Exception as error:  # a bug must not take the batch down: hand this record back
                    logger.exception(
                        "unexpected error while processing an update", extra={"message_id": job.message_id}
                    )
                    outcome = _not_attempted(job, f"unexpected error: {type(error).__name__}")
            if outcome.result is Result.RETRY:
                blocked_by = outcome.message_id
            outcomes[index] = outcome


def report_configuration_error(error: ConfigurationError, consequence: str) -> None:
    """One ERROR line naming the problem (never a secret value) and the ConfigurationErrors metric."""
    logger.error(f"configuration error: {consequence}", extra={"error": str(error)})
    metrics.add_metric(name="ConfigurationErrors", unit="Count", value=1)


@dataclass
class _BatchStop:
    """Shared by the workers of one batch: the first configuration error stops every lane."""

    error: ConfigurationError | None = None


def lane_puller(lanes: list[list[int]]) -> Callable[[], list[int] | None]:
    """A thread-safe ``next()`` over the lanes (a generator shared by threads is not: it raises
    "generator already executing" when two workers resume it at once)."""
    iterator = iter(lanes)
    lock = threading.Lock()

    def pull() -> list[int] | None:
        with lock:
            return next(iterator, None)

    return pull


def _lanes(jobs: Sequence[Job]) -> list[list[int]]:
    """Job indexes grouped by lane, lanes in order of first appearance."""
    by_lane: dict[str, list[int]] = {}
    lanes: list[list[int]] = []
    for index, job in enumerate(jobs):
        if job.lane is None:
            lanes.append([index])
        elif job.lane in by_lane:
            by_lane[job.lane].append(index)
        else:
            by_lane[job.lane] = [index]
            lanes.append(by_lane[job.lane])
    return lanes


def _not_attempted(job: Job, reason: str) -> Outcome:
    outcome = Outcome(Result.RETRY, job.message_id, job.thread_id, error=reason)
    _log(outcome)
    return outcome


_LOG_LEVEL: Mapping[Result, Callable[..., None]] = {
    Result.SUCCESS: logger.info,
    Result.DEAD_LETTERED: logger.warning,
    Result.RETRY: logger.warning,
}


def _log(outcome: Outcome) -> None:
    fields: dict[str, Any] = {
        "outcome": outcome.result.value,
        "thread_id": outcome.thread_id,
        "message_id": outcome.message_id,
        "status": outcome.status,
        "attempts": outcome.attempts,
        "duration_ms": outcome.duration_ms,
        "portkey_trace_id": outcome.trace_id,
    }
    if outcome.category is not None:
        fields["category"] = outcome.category.value
    if outcome.error is not None:
        fields["error"] = outcome.error
    _LOG_LEVEL[outcome.result](f"update {outcome.result.value}", extra=fields)


# EMF holds at most 100 values per metric and Powertools flushes early when one reaches 100, which
# would leave the handler's final flush empty (a warning in every log). Latency is therefore sampled.
LATENCY_SAMPLES = 99


def start_metrics(source: Source) -> None:
    """Every metric of this invocation, ConfigurationErrors included, carries the source dimension the
    alarms and the dashboard select on; so it is set before anything can be counted."""
    metrics.add_dimension(name="source", value=source)


def record_metrics(outcomes: Sequence[Outcome]) -> None:
    """Per-invocation counts and up to ``LATENCY_SAMPLES`` evenly spread latency values (EMF, flushed
    once by the handler's ``log_metrics``)."""
    latencies = [outcome.latency_ms for outcome in outcomes if outcome.latency_ms is not None]
    step = max(1, -(-len(latencies) // LATENCY_SAMPLES))  # ceiling division
    for latency in latencies[::step]:
        metrics.add_metric(name="PortkeyLatency", unit="Milliseconds", value=latency)
    counts = dict.fromkeys(Result, 0)
    for outcome in outcomes:
        counts[outcome.result] += 1
    metrics.add_metric(name="UpdatesApplied", unit="Count", value=counts[Result.SUCCESS])
    metrics.add_metric(name="UpdatesDeadLettered", unit="Count", value=counts[Result.DEAD_LETTERED])
    metrics.add_metric(name="UpdatesRetried", unit="Count", value=counts[Result.RETRY])
    metrics.add_metric(name="HttpAttempts", unit="Count", value=sum(outcome.attempts for outcome in outcomes))
    not_found = sum(1 for o in outcomes if o.category is Category.REJECTED and o.status == 404)
    metrics.add_metric(name="UpdatesRejectedNotFound", unit="Count", value=not_found)
    waits = sum(outcome.retry_after_waits for outcome in outcomes)
    metrics.add_metric(name="RetryAfterWaits", unit="Count", value=waits)


def sqs_job(record: object) -> Job:
    """Validate one SQS record's envelope and body; never raises for bad input."""
    if not isinstance(record, Mapping):
        return Job(
            "", "sqs", json.dumps(record, default=str), None, invalid_reason="SQS record is not an object"
        )
    message_id = str(record.get("messageId") or "")
    raw_body = record.get("body")
    payload = raw_body if isinstance(raw_body, str) else json.dumps(raw_body, default=str)
    # On a FIFO queue the message group is the lane, for invalid messages too: Powertools' FIFO
    # processor skips the rest of a group after a failure, so our lanes must agree on the groups.
    attributes = record.get("attributes")
    group_id = attributes.get("MessageGroupId") if isinstance(attributes, Mapping) else None
    group_lane = f"group:{group_id}" if isinstance(group_id, str) and group_id else None
    try:
        UpdateSqsRecord.model_validate(record)
        parsed = parse_sqs_body(payload)
    except ValidationError as error:
        reason = f"malformed SQS record: {describe_validation_error(error)}"
        return Job(message_id, "sqs", payload, group_lane, invalid_reason=reason)
    except InvalidUpdate as error:
        return Job(message_id, "sqs", payload, group_lane, invalid_reason=str(error))
    return Job(
        message_id, "sqs", payload, group_lane or f"thread:{parsed.update.thread_id}", update=parsed.update
    )


def eventbridge_job(event: Mapping[str, Any]) -> Job:
    """Validate a directly delivered EventBridge event; never raises for bad input."""
    payload = json.dumps(event, ensure_ascii=True, default=str)
    message_id = str(event.get("id") or "")
    try:
        parsed = parse_update_document(dict(event))
    except InvalidUpdate as error:
        return Job(message_id, "eventbridge", payload, None, invalid_reason=str(error))
    return Job(message_id, "eventbridge", payload, f"thread:{parsed.update.thread_id}", update=parsed.update)
