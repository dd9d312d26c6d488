"""Wiring: the container's long-lived parts, and the two event shapes the function accepts."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from thread_updater.applier import GroupApplier
from thread_updater.deadletter import DeadLetterQueue
from thread_updater.deadline import Deadline
from thread_updater.errors import ConfigurationError
from thread_updater.handback import HandBack
from thread_updater.jobs import eventbridge_job, sqs_job
from thread_updater.observability import logger
from thread_updater.outcomes import (
    Outcome,
    Result,
    record_metrics,
    report_configuration_error,
    start_metrics,
)
from thread_updater.portkey import CallLimits, PortkeyClient, create_pool
from thread_updater.processing import UpdateProcessor, WorkerPool
from thread_updater.ratelimit import UpstreamLimiter
from thread_updater.secret_store import CredentialStore
from thread_updater.settings import Settings, load_settings
from thread_updater.state import StateTable


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class UpdateNotApplied(Exception):
    """An EventBridge update failed transiently: raising makes Lambda retry it, then send it to the
    on-failure destination."""


@dataclass(frozen=True, kw_only=True)
class Runtime:
    settings: Settings
    processor: UpdateProcessor
    hand_back: HandBack
    limiter: UpstreamLimiter


@functools.lru_cache(maxsize=1)
def _build_runtime(settings: Settings) -> Runtime:
    """Built once per container (per configuration): pool, executor and caches survive warm starts."""
    credentials = CredentialStore(settings.secret_id, settings.secret_max_age_s)
    pool = create_pool(settings.max_concurrency, settings.connect_timeout_s, settings.read_timeout_s)
    limits = CallLimits(
        max_attempts=settings.max_attempts,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
    )
    # One limiter for every worker: a Retry-After pauses the whole container, not one request.
    limiter = UpstreamLimiter(max_concurrency=settings.max_concurrency, max_rps=settings.max_rps)
    client = PortkeyClient(settings.base_url, pool, credentials, limits=limits, limiter=limiter)
    executor = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="update")
    processor = UpdateProcessor(
        _applier(settings, client),
        DeadLetterQueue(settings.dlq_url),
        WorkerPool(executor=executor, workers=settings.max_concurrency),
    )
    return Runtime(settings=settings, processor=processor, hand_back=HandBack(), limiter=limiter)


def _applier(settings: Settings, client: PortkeyClient) -> GroupApplier:
    """Ordering through the state table, or within a batch only (one WARNING per container) without it."""
    table = None
    if settings.state_table is None:
        logger.warning(
            "THREAD_STATE_TABLE is not set: updates of one thread or conversation are ordered within a "
            "batch only; across batches, redeliveries, retries and replays an older update can "
            "overwrite a newer one"
        )
    else:
        table = StateTable(settings.state_table, ttl_days=settings.state_ttl_days)
    return GroupApplier(
        client,
        table,
        semantics=settings.metadata_semantics,
        lease_grace_s=settings.lease_grace_s,
        heal_delay_s=settings.heal_delay_s,
    )


def current_runtime() -> Runtime:
    """Reads the environment each invocation (cheap) so a bad variable is reported every time."""
    return _build_runtime(load_settings())


def invocation_deadline(context: LambdaContextLike) -> Deadline:
    """The invocation's deadline, leaving a margin to dead-letter, log and answer."""
    remaining_s = context.get_remaining_time_in_millis() / 1000
    margin_s = max(0.5, min(3.0, remaining_s * 0.1))
    return Deadline.after(remaining_s - margin_s)


def handle_event(event: Mapping[str, Any], context: LambdaContextLike) -> dict[str, Any] | None:
    """The SQS batch response, or None for an EventBridge event."""
    if isinstance(event, Mapping) and isinstance(event.get("Records"), list):
        return handle_sqs(event, context)
    if isinstance(event, Mapping) and "detail-type" in event:
        handle_eventbridge(event, context)
        return None
    raise ValueError(
        "unsupported event: expected an SQS batch (Records) or an EventBridge event (detail-type)"
    )


def handle_sqs(event: Mapping[str, Any], context: LambdaContextLike) -> dict[str, Any]:
    start_metrics("sqs")
    records: list[Any] = event["Records"]
    jobs = [sqs_job(record) for record in records]
    try:
        runtime = current_runtime()
    except ConfigurationError as error:
        report_configuration_error(error, "the whole batch goes back to the queue")
        outcomes = [
            Outcome(result=Result.RETRY, message_id=job.message_id, target=None, error=str(error))
            for job in jobs
        ]
    else:
        deadline = invocation_deadline(context)
        outcomes = runtime.processor.process_batch(jobs, deadline)
        runtime.hand_back.apply(jobs, outcomes, deadline)
        runtime.limiter.record_metric()
    record_metrics(outcomes)
    return partial_batch_response(records, outcomes)


def partial_batch_response(records: Sequence[Any], outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The ``batchItemFailures`` response: every record handed back, named by its messageId.

    Built here rather than by Powertools' ``BatchProcessor``: that utility runs a record handler per
    record, one after another, while this function runs lanes concurrently and decides every outcome
    itself (a FIFO group already stops at its first hand-back, as ``SqsFifoPartialProcessor`` would).
    What is left is this list, so it is written out plainly.
    """
    retry = {outcome.message_id for outcome in outcomes if outcome.result is Result.RETRY}
    named = [
        record["messageId"]
        for record in records
        if isinstance(record, Mapping) and isinstance(record.get("messageId"), str) and record["messageId"]
    ]
    if retry - set(named):  # only a record with a messageId can be handed back; never drop one silently
        raise RuntimeError("a record without messageId could not be settled; failing the whole batch")
    handed_back = dict.fromkeys(message_id for message_id in named if message_id in retry)  # record order
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in handed_back]}


def handle_eventbridge(event: Mapping[str, Any], context: LambdaContextLike) -> None:
    start_metrics("eventbridge")
    job = eventbridge_job(event)
    try:
        runtime = current_runtime()
        [outcome] = runtime.processor.process_unit([job], invocation_deadline(context))
    except ConfigurationError as error:  # fail the invocation (Lambda retries it), loudly
        report_configuration_error(error, "the invocation fails and Lambda retries it")
        raise
    runtime.limiter.record_metric()
    record_metrics([outcome])
    if outcome.result is Result.RETRY:
        raise UpdateNotApplied(f"update {job.message_id} not applied: {outcome.error}")
