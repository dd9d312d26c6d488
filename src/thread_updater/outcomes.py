"""Where an update ended up (``Outcome``), its one log line, and the invocation's metrics.

Every update produces exactly one ``Outcome`` and one outcome log line; the handler turns the
outcomes into the SQS batch response (or the EventBridge invocation's result) and the metrics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from thread_updater.deadletter import Category, Source
from thread_updater.errors import ConfigurationError
from thread_updater.models import Target
from thread_updater.observability import logger, metrics

__all__ = [
    "LATENCY_SAMPLES",
    "Outcome",
    "Result",
    "log_outcome",
    "record_metrics",
    "report_configuration_error",
    "start_metrics",
]


class Result(StrEnum):
    SUCCESS = "success"
    SUPERSEDED = "superseded"  # every field it sets is already covered by a newer applied version
    DEAD_LETTERED = "dead_lettered"
    RETRY = "retry"


@dataclass(frozen=True, kw_only=True)
class Outcome:
    result: Result
    message_id: str
    target: Target | None  # None: the message did not say (validly) what it modifies
    status: int | None = None
    attempts: int = 0
    error: str | None = None
    category: Category | None = None
    trace_id: str | None = None
    duration_ms: float = 0.0
    latency_ms: float | None = None  # the last Portkey call's own time
    retry_after_waits: int = 0
    version: int | None = None
    version_source: str | None = None
    newer_version: int | None = None  # superseded: the newest applied version that covers it
    sent_fields: tuple[str, ...] | None = None  # set when only some of the update's fields were sent
    healed: tuple[str, ...] = ()  # fields whose newest value was sent again after a possible late write
    retry_delay_s: float | None = None  # handed back: when it should come back (None: the queue's default)


_LOG_LEVEL: Mapping[Result, Callable[..., None]] = {
    Result.SUCCESS: logger.info,
    Result.SUPERSEDED: logger.info,
    Result.DEAD_LETTERED: logger.warning,
    Result.RETRY: logger.warning,
}


def log_outcome(outcome: Outcome) -> None:
    """The one structured line per update that says where it ended up."""
    fields: dict[str, Any] = {
        "outcome": outcome.result.value,
        "target": outcome.target.kind.value if outcome.target else None,
        outcome.target.id_field if outcome.target else "thread_id": outcome.target.id
        if outcome.target
        else None,
        "message_id": outcome.message_id,
        "status": outcome.status,
        "attempts": outcome.attempts,
        "duration_ms": outcome.duration_ms,
        "portkey_trace_id": outcome.trace_id,
        "version": outcome.version,
        "version_source": outcome.version_source,
    }
    optional = {
        "category": outcome.category.value if outcome.category is not None else None,
        "error": outcome.error,
        "newer_version": outcome.newer_version,
        "sent_fields": list(outcome.sent_fields) if outcome.sent_fields is not None else None,
        "healed": list(outcome.healed) or None,
        "retry_delay_s": outcome.retry_delay_s,
    }
    fields.update({name: value for name, value in optional.items() if value is not None})
    _LOG_LEVEL[outcome.result](f"update {outcome.result.value}", extra=fields)


def report_configuration_error(error: ConfigurationError, consequence: str) -> None:
    """One ERROR line naming the problem (never a secret value) and the ConfigurationErrors metric."""
    logger.error(f"configuration error: {consequence}", extra={"error": str(error)})
    metrics.add_metric(name="ConfigurationErrors", unit="Count", value=1)


# EMF holds at most 100 values per metric and Powertools flushes early when one reaches 100, which
# would leave the handler's final flush empty (a warning in every log). Latency is therefore sampled.
LATENCY_SAMPLES = 99


_cold_start = True


def start_metrics(source: Source) -> None:
    """Every metric of this invocation, ConfigurationErrors and ColdStart included, carries the source
    dimension the alarms and the dashboard select on; so it is set before anything can be counted.

    ColdStart is counted here rather than by Powertools' ``capture_cold_start_metric``, which emits it
    before the handler runs, with the function name as its only dimension and no ``source``.
    """
    global _cold_start  # noqa: PLW0603 - once per container, like the interpreter it describes
    metrics.add_dimension(name="source", value=source)
    if _cold_start:
        _cold_start = False
        metrics.add_metric(name="ColdStart", unit="Count", value=1)


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
    metrics.add_metric(name="UpdatesSuperseded", unit="Count", value=counts[Result.SUPERSEDED])
    heals = sum(1 for outcome in outcomes if outcome.healed)
    metrics.add_metric(name="LateWriteHeals", unit="Count", value=heals)
    metrics.add_metric(name="UpdatesDeadLettered", unit="Count", value=counts[Result.DEAD_LETTERED])
    metrics.add_metric(name="UpdatesRetried", unit="Count", value=counts[Result.RETRY])
    metrics.add_metric(name="HttpAttempts", unit="Count", value=sum(outcome.attempts for outcome in outcomes))
    # Only dead-lettered 404s: a 404 handed back (the DLQ refused the letter) is counted when it is settled,
    # not again at every redelivery.
    not_found = sum(
        1
        for o in outcomes
        if o.result is Result.DEAD_LETTERED and o.category is Category.REJECTED and o.status == 404
    )
    metrics.add_metric(name="UpdatesRejectedNotFound", unit="Count", value=not_found)
    waits = sum(outcome.retry_after_waits for outcome in outcomes)
    metrics.add_metric(name="RetryAfterWaits", unit="Count", value=waits)
