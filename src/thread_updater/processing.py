"""Applying a batch: lanes run concurrently over a bounded pool; in each lane, one request per target.

Updates that share a lane (the target, or the FIFO message group) run together: the valid updates
of one thread or conversation are one *unit*, applied in one request by ``GroupApplier`` (newest
version per slot wins, applier.py); an invalid one is a unit of its own (a dead letter). A lane's
units run in order of first appearance, and a lane stops at its first hand-back: the rest of it goes
back to the queue with the same delay, so nothing overtakes an update that must be retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from thread_updater.applier import (
    Applied,
    GroupApplier,
    GroupResult,
    HandedBack,
    Member,
    Rejected,
    Superseded,
)
from thread_updater.deadletter import Category, DeadLetter, DeadLetterQueue
from thread_updater.deadline import Deadline
from thread_updater.delays import transient_delay
from thread_updater.errors import ConfigurationError, DeadLetterError, StateUnavailableError
from thread_updater.jobs import Job
from thread_updater.models import Target
from thread_updater.observability import logger
from thread_updater.outcomes import Outcome, Result, log_outcome, report_configuration_error
from thread_updater.portkey import CallOutcome
from thread_updater.slots import semantic_problem

__all__ = ["UpdateProcessor", "WorkerPool", "lane_puller", "lanes_of", "units_of"]


class UpdateProcessor:
    """Applies jobs through Portkey, dead-letters the permanent failures, logs every outcome."""

    def __init__(self, applier: GroupApplier, dead_letters: DeadLetterQueue, pool: WorkerPool) -> None:
        self._applier = applier
        self._dead_letters = dead_letters
        self._executor = pool.executor
        self._workers = pool.workers

    def process_unit(self, jobs: Sequence[Job], deadline: Deadline) -> list[Outcome]:
        """One unit (one invalid job, or the valid jobs of one target); raises ConfigurationError."""
        started = time.monotonic()
        outcomes = self._outcomes_of(jobs, deadline)
        duration_ms = round((time.monotonic() - started) * 1000, 1)
        finished = []
        for job, outcome in zip(jobs, outcomes, strict=True):
            done = replace(
                outcome, duration_ms=duration_ms, version=job.version, version_source=job.version_source
            )
            log_outcome(done)
            finished.append(done)
        return finished

    def _outcomes_of(self, jobs: Sequence[Job], deadline: Deadline) -> list[Outcome]:
        """Dead-letter each job that cannot be applied; the rest go to the applier as one group."""
        outcomes: dict[int, Outcome] = {}
        members: list[Member] = []
        for index, job in enumerate(jobs):
            problem = self._problem_of(job)
            if problem is not None or job.update is None:
                outcomes[index] = self._dead_letter(
                    job, category=Category.VALIDATION, error=problem or "invalid", deadline=deadline
                )
            else:
                members.append(
                    Member(index=index, version=job.version or 0, update=job.update, trace_id=job.message_id)
                )
        if members:
            outcomes.update(self._group_outcomes(jobs, members, deadline))
        return [outcomes[index] for index in range(len(jobs))]

    def _problem_of(self, job: Job) -> str | None:
        if job.update is None or job.version is None:
            return job.invalid_reason or "invalid"
        return semantic_problem(job.update, self._applier.semantics)

    def _group_outcomes(
        self, jobs: Sequence[Job], members: Sequence[Member], deadline: Deadline
    ) -> dict[int, Outcome]:
        target = members[0].update.target
        try:
            results = self._applier.apply(target, members, deadline=deadline)
        except StateUnavailableError as error:
            return {
                member.index: _retry(
                    jobs[member.index],
                    f"state table: {error}",
                    transient_delay(jobs[member.index].receive_count, None),
                )
                for member in members
            }
        return {
            member.index: self._outcome_of(jobs[member.index], results[member.index], deadline)
            for member in members
        }

    def _outcome_of(self, job: Job, result: GroupResult, deadline: Deadline) -> Outcome:
        if isinstance(result, Rejected):
            letter = self._dead_letter(
                job, category=Category.REJECTED, error=result.error, call=result.call, deadline=deadline
            )
            return _with_call(letter, result.call)
        if isinstance(result, Superseded):
            outcome = Outcome(
                result=Result.SUPERSEDED,
                message_id=job.message_id,
                target=job.target,
                newer_version=result.newer_version,
                healed=result.healed,
            )
            return _with_call(outcome, result.call)
        if isinstance(result, HandedBack):
            retry_after = result.call.retry_after_s if result.call else None
            delay = (
                result.delay_s
                if result.delay_s is not None
                else transient_delay(job.receive_count, retry_after)
            )
            return _with_call(_retry(job, result.error, delay), result.call)
        applied: Applied = result
        outcome = Outcome(
            result=Result.SUCCESS,
            message_id=job.message_id,
            target=job.target,
            newer_version=applied.newer_version,
            sent_fields=applied.sent,
            healed=applied.healed,
        )
        return _with_call(outcome, applied.call)

    def _dead_letter(
        self, job: Job, *, category: Category, error: str, deadline: Deadline, call: CallOutcome | None = None
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

    def process_batch(self, jobs: Sequence[Job], deadline: Deadline) -> list[Outcome]:
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
        deadline: Deadline,
    ) -> None:
        handed_back: Outcome | None = None
        for unit in units_of(lane_jobs):
            unit_jobs = [lane_jobs[position] for position in unit]
            if stop.error is not None:
                done = [_not_attempted(job, f"configuration error: {stop.error}") for job in unit_jobs]
            elif handed_back is not None:
                reason = f"an earlier update in lane {unit_jobs[0].lane!r} must be retried first"
                done = [_not_attempted(job, reason, handed_back.retry_delay_s) for job in unit_jobs]
            else:
                done = self._process_guarded(unit_jobs, stop, deadline)
            for position, outcome in zip(unit, done, strict=True):
                outcomes[indexes[position]] = outcome
                if handed_back is None and outcome.result is Result.RETRY:
                    handed_back = outcome

    def _process_guarded(self, jobs: Sequence[Job], stop: _BatchStop, deadline: Deadline) -> list[Outcome]:
        """``process_unit``, with a configuration error stopping the batch and a bug handing back the unit."""
        try:
            return self.process_unit(jobs, deadline)
        except ConfigurationError as error:
            stop.error = stop.error or error
            return [_not_attempted(job, f"configuration error: {error}") for job in jobs]
        except Exception as error:  # a bug must not take the batch down: hand this unit back
            logger.exception(
                "unexpected error while processing an update", extra={"message_id": jobs[0].message_id}
            )
            return [_not_attempted(job, f"unexpected error: {type(error).__name__}") for job in jobs]


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


def units_of(lane_jobs: Sequence[Job]) -> list[list[int]]:
    """Positions in a lane grouped into units: the valid jobs of one target together (at the first's
    place), every other job alone; units in order of first appearance."""
    by_target: dict[Target, list[int]] = {}
    units: list[list[int]] = []
    for position, job in enumerate(lane_jobs):
        target = job.update.target if job.update is not None and job.version is not None else None
        if target is None:
            units.append([position])
        elif target in by_target:
            by_target[target].append(position)
        else:
            by_target[target] = [position]
            units.append(by_target[target])
    return units


def _retry(job: Job, error: str, delay_s: float | None) -> Outcome:
    return Outcome(
        result=Result.RETRY, message_id=job.message_id, target=job.target, error=error, retry_delay_s=delay_s
    )


def _with_call(outcome: Outcome, call: CallOutcome | None) -> Outcome:
    """The outcome with what the Portkey call that decided it saw."""
    if call is None:
        return outcome
    return replace(
        outcome,
        status=call.status,
        attempts=call.attempts,
        trace_id=call.trace_id,
        latency_ms=call.latency_ms,
        retry_after_waits=call.retry_after_waits,
    )


def _not_attempted(job: Job, reason: str, delay_s: float | None = None) -> Outcome:
    outcome = _retry(job, reason, delay_s)
    log_outcome(outcome)
    return outcome
