"""Wiring: the container's long-lived parts, and the two event shapes the function accepts."""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    SqsFifoPartialProcessor,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from thread_updater.credentials import CredentialStore
from thread_updater.deadletter import DeadLetterQueue
from thread_updater.errors import ConfigurationError
from thread_updater.portkey import PortkeyClient, create_pool
from thread_updater.processing import (
    Outcome,
    Result,
    UpdateProcessor,
    eventbridge_job,
    record_metrics,
    report_configuration_error,
    sqs_job,
    start_metrics,
)
from thread_updater.settings import Settings, load_settings


class LambdaContextLike(Protocol):
    def get_remaining_time_in_millis(self) -> int: ...


class UpdateNotApplied(Exception):
    """An EventBridge update failed transiently: raising makes Lambda retry it, then send it to the
    on-failure destination."""


# Powertools turns our outcomes into the batchItemFailures response. The FIFO variant reports the
# rest of a failed message group as failures too, exactly as our lanes already stopped them.
_STANDARD_BATCH = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
_FIFO_BATCH = SqsFifoPartialProcessor(skip_group_on_error=True)
_FIFO_BATCH.raise_on_entire_batch_failure = False


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    processor: UpdateProcessor


@functools.lru_cache(maxsize=1)
def _build_runtime(settings: Settings) -> Runtime:
    """Built once per container (per configuration): pool, executor and caches survive warm starts."""
    credentials = CredentialStore(settings.secret_id, settings.secret_max_age_s)
    pool = create_pool(settings.max_concurrency, settings.connect_timeout_s, settings.read_timeout_s)
    client = PortkeyClient(
        settings.base_url,
        pool,
        credentials,
        max_attempts=settings.max_attempts,
        connect_timeout_s=settings.connect_timeout_s,
        read_timeout_s=settings.read_timeout_s,
    )
    executor = ThreadPoolExecutor(max_workers=settings.max_concurrency, thread_name_prefix="update")
    processor = UpdateProcessor(client, DeadLetterQueue(settings.dlq_url), executor, settings.max_concurrency)
    return Runtime(settings, processor)


def current_runtime() -> Runtime:
    """Reads the environment each invocation (cheap) so a bad variable is reported every time."""
    return _build_runtime(load_settings())


def invocation_deadline(context: LambdaContextLike) -> float:
    """A ``time.monotonic()`` deadline that leaves a margin to dead-letter, log and answer."""
    remaining_s = context.get_remaining_time_in_millis() / 1000
    margin_s = max(0.5, min(3.0, remaining_s * 0.1))
    return time.monotonic() + remaining_s - margin_s


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
        outcomes = [Outcome(Result.RETRY, job.message_id, None, error=str(error)) for job in jobs]
    else:
        outcomes = runtime.processor.process_batch(jobs, invocation_deadline(context))
    record_metrics(outcomes)
    retry = {outcome.message_id for outcome in outcomes if outcome.result is Result.RETRY}
    # Only records with a non-empty string messageId can be named in batchItemFailures.
    named = [
        record
        for record in records
        if isinstance(record, Mapping) and isinstance(record.get("messageId"), str) and record["messageId"]
    ]
    if retry - {record["messageId"] for record in named}:
        raise RuntimeError("a record without messageId could not be settled; failing the whole batch")
    if not named:  # all settled without one (dead-lettered); Powertools refuses an empty batch
        return {"batchItemFailures": []}

    def settle(record: SQSRecord) -> None:
        if record.message_id in retry:
            raise UpdateNotApplied(f"message {record.message_id} goes back to the queue")

    with_ids = {**event, "Records": named}
    processor = (
        _FIFO_BATCH if any(job.lane and job.lane.startswith("group:") for job in jobs) else _STANDARD_BATCH
    )
    return dict(process_partial_response(event=with_ids, record_handler=settle, processor=processor))


def handle_eventbridge(event: Mapping[str, Any], context: LambdaContextLike) -> None:
    start_metrics("eventbridge")
    job = eventbridge_job(event)
    try:
        runtime = current_runtime()
        outcome = runtime.processor.process(job, invocation_deadline(context))
    except ConfigurationError as error:  # fail the invocation (Lambda retries it), loudly
        report_configuration_error(error, "the invocation fails and Lambda retries it")
        raise
    record_metrics([outcome])
    if outcome.result is Result.RETRY:
        raise UpdateNotApplied(f"update {job.message_id} not applied: {outcome.error}")
