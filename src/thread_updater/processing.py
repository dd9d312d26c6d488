"""Applying a batch: lanes run concurrently over a bounded pool, each lane in order.

Updates that share a lane (the thread id, or the FIFO message group) run one after another in the
order received; a lane stops at its first hand-back so nothing overtakes an update that must be
retried. Where each update ends up is decided in ``UpdateProcessor.process``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from thread_updater.deadletter import Category, DeadLetter, DeadLetterQueue
from thread_updater.errors import ConfigurationError, DeadLetterError, StateUnavailableError
from thread_updater.handback import busy_delay, transient_delay
from thread_updater.jobs import Job
from thread_updater.observability import logger
from thread_updater.ordering import OrderedApplier
from thread_updater.outcomes import Outcome, Result, log_outcome, report_configuration_error
from thread_updater.portkey import CallOutcome, CallResult, PortkeyClient
from thread_updater.state import now_ms

__all__ = ["UpdateProcessor", "WorkerPool", "lane_puller", "lanes_of"]


class UpdateProcessor:
    """Applies jobs through Portkey, dead-letters the permanent failures, logs every outcome."""

    def __init__(
        self,
        client: PortkeyClient,
        dead_letters: DeadLetterQueue,
        pool: WorkerPool,
        *,
        ordering: OrderedApplier | None = None,
    ) -> None:
        self._client = client
        self._dead_letters = dead_letters
        self._executor = pool.executor
        self._workers = pool.workers
        self._ordering = ordering

    def process(self, job: Job, deadline: float) -> Outcome:
        """Raises ConfigurationError; every other failure becomes an Outcome."""
        started = time.monotonic()
        if job.update is None:
            outcome = self._dead_letter(
                job, category=Category.VALIDATION, error=job.invalid_reason or "invalid", deadline=deadline
            )
        elif self._ordering is None or job.version is None:
            call = self._client.modify(
                job.update.target, job.update.request_body(), trace_id=job.message_id, deadline=deadline
            )
            outcome = self._settle(job, call, deadline)
        else:
            outcome = self._apply_in_order(job, self._ordering, deadline)
        outcome = replace(
            outcome,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
            version=job.version,
            version_source=job.version_source,
        )
        log_outcome(outcome)
        return outcome

    def _apply_in_order(self, job: Job, ordering: OrderedApplier, deadline: float) -> Outcome:
        """The update through its thread's claim in the state table (see ordering.py)."""
        if job.update is None or job.version is None:  # pragma: no cover - process() checks both
            raise ValueError("only valid, versioned jobs are applied in order")
        retry = Outcome(result=Result.RETRY, message_id=job.message_id, target=job.target)
        try:
            ordered = ordering.apply(
                job.update, version=job.version, trace_id=job.message_id, deadline=deadline
            )
        except StateUnavailableError as error:
            return replace(
                retry, error=f"state table: {error}", retry_delay_s=transient_delay(job.receive_count, None)
            )
        if ordered.busy_until_ms is not None or ordered.plan is None:
            delay = busy_delay(ordered.busy_until_ms, now_ms())
            return replace(retry, error="the thread is held by another invocation", retry_delay_s=delay)
        plan = ordered.plan
        if plan.waiting_for:
            waits = ", ".join(f"{name} version {version}" for name, version in plan.waiting_for.items())
            delay = busy_delay(plan.wait_until_ms, now_ms())
            return replace(retry, error=f"waiting for {waits}, whose outcome is unknown", retry_delay_s=delay)
        newer = max(plan.covered.values()) if plan.covered else None
        if ordered.call is None:
            return Outcome(
                result=Result.SUPERSEDED,
                message_id=job.message_id,
                target=job.target,
                newer_version=newer,
            )
        outcome = replace(
            self._settle(job, ordered.call, deadline),
            newer_version=newer,
            sent_fields=tuple(sorted(plan.send)) if plan.covered else None,
            healed=tuple(sorted(plan.heal)) if ordered.call.result is CallResult.APPLIED else (),
        )
        if outcome.result is Result.SUCCESS and not plan.send and plan.covered:
            outcome = replace(outcome, result=Result.SUPERSEDED)
        if outcome.result in (Result.SUCCESS, Result.SUPERSEDED) and ordered.call.uncertain:
            # Applied by a retry, but an earlier attempt may still be written late, over a newer
            # update sent after the lease's grace. Coming back once the heal is due makes sure the
            # thread is looked at again then (a newer state is re-sent; the same one settles).
            outcome = replace(
                outcome,
                result=Result.RETRY,
                error="applied, but an earlier attempt's outcome is unknown: back when its heal is due",
                retry_delay_s=ordering.heal_delay_s,
            )
        return outcome

    def _settle(self, job: Job, call: CallOutcome, deadline: float) -> Outcome:
        if call.result is CallResult.REJECTED:
            outcome = self._dead_letter(
                job, category=Category.REJECTED, error=call.error or "", call=call, deadline=deadline
            )
        else:
            outcome = Outcome(
                result=Result.SUCCESS if call.result is CallResult.APPLIED else Result.RETRY,
                message_id=job.message_id,
                target=job.target,
                status=call.status,
                attempts=call.attempts,
                error=call.error,
                trace_id=call.trace_id,
            )
        if outcome.result is Result.RETRY:
            # After an unknown outcome the ordered path comes back when the late write is healed.
            if call.uncertain and self._ordering is not None:
                delay = self._ordering.heal_delay_s
            else:
                delay = transient_delay(job.receive_count, call.retry_after_s)
            outcome = replace(outcome, retry_delay_s=delay)
        return replace(outcome, latency_ms=call.latency_ms, retry_after_waits=call.retry_after_waits)

    def _dead_letter(
        self, job: Job, *, category: Category, error: str, deadline: float, call: CallOutcome | None = None
    ) -> Outcome:
        """Dead-letter the job; when the DLQ does not take it, hand the record back instead."""
        status = call.status if call else None
        attempts = call.attempts if call else 0
        letter = DeadLetter.naming(
            job.target,
            category=category,
            error=error,
            status=status,
            source=job.source,
            message_id=job.message_id,
            payload=job.payload,
            attempts=attempts,
            version=job.version,
            version_source=job.version_source,
        )
        try:
            self._dead_letters.send(letter, deadline)
        except DeadLetterError as failure:
            result, error = Result.RETRY, f"{category.value}: {error}; {failure}"
        else:
            result = Result.DEAD_LETTERED
        return Outcome(
            result=result,
            message_id=job.message_id,
            target=job.target,
            status=status,
            attempts=attempts,
            error=error,
            category=category,
            trace_id=call.trace_id if call else None,
        )

    def process_batch(self, jobs: Sequence[Job], deadline: float) -> list[Outcome]:
        """Run lanes concurrently, each lane in order; a lane stops at its first retry.

        A thread pool rather than asyncio: urllib3 is blocking, and a handful of threads over one
        pool is the simplest way to keep ``MAX_CONCURRENCY`` requests in flight. Workers pull lanes
        from a shared iterator, so memory stays flat however large the batch.
        """
        outcomes: list[Outcome | None] = [None] * len(jobs)
        lanes = lanes_of(jobs)
        next_lane = lane_puller(lanes)
        stop = _BatchStop()

        def work() -> None:
            while (lane := next_lane()) is not None:
                self._run_lane([jobs[index] for index in lane], lane, outcomes, stop, deadline)

        futures = [self._executor.submit(work) for _ in range(min(self._workers, len(lanes)))]
        for future in futures:
            future.result()
        if stop.error is not None:
            report_configuration_error(stop.error, "unfinished updates go back to the queue")
        return [outcome for outcome in outcomes if outcome is not None]

    def _run_lane(
        self,
        lane_jobs: Sequence[Job],
        indexes: Sequence[int],
        outcomes: list[Outcome | None],
        stop: _BatchStop,
        deadline: float,
    ) -> None:
        blocked = False
        for index, job in zip(indexes, lane_jobs, strict=True):
            if stop.error is not None:
                outcome = _not_attempted(job, f"configuration error: {stop.error}")
            elif blocked:
                outcome = _not_attempted(job, f"an earlier update in lane {job.lane!r} must be retried first")
            else:
                outcome = self._process_guarded(job, stop, deadline)
            blocked = blocked or outcome.result is Result.RETRY
            outcomes[index] = outcome

    def _process_guarded(self, job: Job, stop: _BatchStop, deadline: float) -> Outcome:
        """``process``, with a configuration error stopping the batch and a bug handing back one record."""
        try:
            return self.process(job, deadline)
        except ConfigurationError as error:
            stop.error = stop.error or error
            return _not_attempted(job, f"configuration error: {error}")
        except Exception as error:  # a bug must not take the batch down: hand this record back
            logger.exception(
                "unexpected error while processing an update", extra={"message_id": job.message_id}
            )
            return _not_attempted(job, f"unexpected error: {type(error).__name__}")


@dataclass(frozen=True, kw_only=True)
class WorkerPool:
    """The container's worker threads: at most ``workers`` updates in flight at once."""

    executor: ThreadPoolExecutor
    workers: int


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


def lanes_of(jobs: Sequence[Job]) -> list[list[int]]:
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
    outcome = Outcome(result=Result.RETRY, message_id=job.message_id, target=job.target, error=reason)
    log_outcome(outcome)
    return outcome
