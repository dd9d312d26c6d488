"""Record → job: each SQS record or EventBridge event becomes one job, valid or with its reason.

Parsing never raises for bad input: an invalid message is a job with ``invalid_reason`` (it goes to
the dead-letter queue), so one bad record cannot take a batch down.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from thread_updater.deadletter import Source
from thread_updater.models import (
    InvalidUpdate,
    ThreadUpdate,
    UpdateSqsRecord,
    parse_sqs_body,
    parse_update_document,
)
from thread_updater.validation import describe_validation_error

__all__ = ["Job", "eventbridge_job", "sqs_job"]


@dataclass(frozen=True, kw_only=True)
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


def sqs_job(record: object) -> Job:
    """Validate one SQS record's envelope and body; never raises for bad input."""
    if not isinstance(record, Mapping):
        return Job(
            message_id="",
            source="sqs",
            payload=json.dumps(record, default=str),
            lane=None,
            invalid_reason="SQS record is not an object",
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
        return Job(
            message_id=message_id, source="sqs", payload=payload, lane=group_lane, invalid_reason=reason
        )
    except InvalidUpdate as error:
        return Job(
            message_id=message_id, source="sqs", payload=payload, lane=group_lane, invalid_reason=str(error)
        )
    lane = group_lane or f"thread:{parsed.update.thread_id}"
    return Job(message_id=message_id, source="sqs", payload=payload, lane=lane, update=parsed.update)


def eventbridge_job(event: Mapping[str, Any]) -> Job:
    """Validate a directly delivered EventBridge event; never raises for bad input."""
    payload = json.dumps(event, ensure_ascii=True, default=str)
    message_id = str(event.get("id") or "")
    try:
        parsed = parse_update_document(dict(event))
    except InvalidUpdate as error:
        return Job(
            message_id=message_id, source="eventbridge", payload=payload, lane=None, invalid_reason=str(error)
        )
    lane = f"thread:{parsed.update.thread_id}"
    return Job(message_id=message_id, source="eventbridge", payload=payload, lane=lane, update=parsed.update)
