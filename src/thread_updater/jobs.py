"""Record → job: each SQS record or EventBridge event becomes one job, valid or with its reason.

Parsing never raises for bad input: an invalid message is a job with ``invalid_reason`` (it goes to
the dead-letter queue), so one bad record cannot take a batch down.

Every valid job has a version, which orders the updates of one thread (see docs/contract.md):
the message's own ``version`` (in the body or the EventBridge ``detail``), else the SQS message
attribute ``version``, else when the message was made: the EventBridge event's ``time`` or the SQS
``SentTimestamp``, in epoch milliseconds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from thread_updater.deadletter import Source
from thread_updater.models import (
    MAX_VERSION,
    InvalidUpdate,
    ParsedUpdate,
    Target,
    Update,
    UpdateSqsRecord,
    parse_sqs_body,
    parse_update_document,
)
from thread_updater.validation import describe_validation_error

__all__ = ["Job", "VersionSource", "eventbridge_job", "sqs_job"]

VERSION_ATTRIBUTE = "version"


class VersionSource(StrEnum):
    BODY = "body"  # the update's own "version" (SQS body or EventBridge detail)
    ATTRIBUTE = "attribute"  # the SQS message attribute "version"
    SENT_TIMESTAMP = "sent_timestamp"  # when SQS received the message
    EVENT_TIME = "event_time"  # the EventBridge event's "time"


@dataclass(frozen=True, kw_only=True)
class Job:
    """One update to apply, or the reason it cannot be."""

    message_id: str
    source: Source
    payload: str  # the original SQS body, or the EventBridge event as JSON: what a replay needs
    lane: str | None  # updates sharing a lane keep their order; None runs independently
    update: Update | None = None
    invalid_reason: str | None = None
    version: int | None = None  # known for every valid job, and for invalid ones where it could be read
    version_source: VersionSource | None = None
    receipt: Receipt | None = None  # where an SQS record can be given a retry delay

    @property
    def target(self) -> Target | None:
        """The thread or conversation it modifies (None for an invalid message)."""
        return self.update.target if self.update else None

    @property
    def receive_count(self) -> int:
        """How often SQS has delivered this record (1 for EventBridge)."""
        return self.receipt.receive_count if self.receipt else 1


@dataclass(frozen=True, kw_only=True)
class Receipt:
    """What changing an SQS record's visibility needs: its queue and receipt handle."""

    queue_arn: str
    receipt_handle: str
    receive_count: int


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
    group_lane = _fifo_group_lane(record)
    common: dict[str, Any] = {"message_id": message_id, "source": "sqs", "payload": payload}
    common["receipt"] = _receipt(record)
    try:
        UpdateSqsRecord.model_validate(record)
        parsed = parse_sqs_body(payload)
        version, version_source = _sqs_version(record, parsed)
    except ValidationError as error:
        reason = f"malformed SQS record: {describe_validation_error(error)}"
        return Job(**common, lane=group_lane, invalid_reason=reason)
    except InvalidUpdate as error:
        return Job(**common, lane=group_lane, invalid_reason=str(error))
    lane = group_lane or parsed.update.target.lane
    return Job(**common, lane=lane, update=parsed.update, version=version, version_source=version_source)


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
    version, version_source = _own_or(parsed, None)
    return Job(
        message_id=message_id,
        source="eventbridge",
        payload=payload,
        lane=parsed.update.target.lane,
        update=parsed.update,
        version=version,
        version_source=version_source,
    )


def _fifo_group_lane(record: Mapping[str, Any]) -> str | None:
    """On a FIFO queue the message group is the lane, for invalid messages too: SQS delivers a group's
    messages in order and the lane keeps them so. On a standard queue a MessageGroupId (fair queues put
    a tenant there) orders nothing, so there the thread is the lane."""
    if not str(record.get("eventSourceARN") or "").endswith(".fifo"):
        return None
    attributes = record.get("attributes")
    group_id = attributes.get("MessageGroupId") if isinstance(attributes, Mapping) else None
    return f"group:{group_id}" if isinstance(group_id, str) and group_id else None


def _receipt(record: Mapping[str, Any]) -> Receipt | None:
    arn, handle = record.get("eventSourceARN"), record.get("receiptHandle")
    attributes = record.get("attributes")
    count = attributes.get("ApproximateReceiveCount") if isinstance(attributes, Mapping) else None
    if not (isinstance(arn, str) and arn and isinstance(handle, str) and handle):
        return None
    return Receipt(queue_arn=arn, receipt_handle=handle, receive_count=_decimal(count) or 1)


def _sqs_version(record: Mapping[str, Any], parsed: ParsedUpdate) -> tuple[int, VersionSource]:
    """The body's version, else the ``version`` message attribute, else the event time or SentTimestamp;
    raises InvalidUpdate for an unreadable attribute or one that contradicts the body."""
    attribute = _version_attribute(record)
    own = parsed.update.version
    if attribute is not None and own is not None and attribute != own:
        raise InvalidUpdate(
            f"version in the message ({own}) and the message attribute 'version' ({attribute}) disagree"
        )
    if own is None and attribute is not None:
        return attribute, VersionSource.ATTRIBUTE
    attributes = record["attributes"]
    return _own_or(parsed, _decimal(attributes.get("SentTimestamp")))


def _own_or(parsed: ParsedUpdate, sent_timestamp: int | None) -> tuple[int, VersionSource]:
    if parsed.update.version is not None:
        return parsed.update.version, VersionSource.BODY
    if parsed.event_time_ms is not None:
        return parsed.event_time_ms, VersionSource.EVENT_TIME
    if sent_timestamp is None:
        raise InvalidUpdate("no version: the message has none and the record no SentTimestamp")
    return sent_timestamp, VersionSource.SENT_TIMESTAMP


def _version_attribute(record: Mapping[str, Any]) -> int | None:
    """The ``version`` message attribute, or None when there is none. Its DataType must be Number (or a
    custom ``Number.*`` type): a String attribute that happens to hold digits is a producer's mistake."""
    attributes = record.get("messageAttributes")
    attribute = attributes.get(VERSION_ATTRIBUTE) if isinstance(attributes, Mapping) else None
    if attribute is None:
        return None
    data_type = attribute.get("dataType") if isinstance(attribute, Mapping) else None
    text = attribute.get("stringValue") if isinstance(attribute, Mapping) else None
    value = _decimal(text)
    if not (isinstance(data_type, str) and data_type.split(".", 1)[0] == "Number"):
        raise InvalidUpdate("message attribute 'version' must have DataType Number")
    if value is None or not 1 <= value <= MAX_VERSION:
        raise InvalidUpdate(f"message attribute 'version' must be an integer from 1 to {MAX_VERSION}")
    return value


def _decimal(text: object) -> int | None:
    """``int(text)`` for a plain decimal string (what SQS puts in its attributes), else None."""
    if isinstance(text, str) and text.isascii() and text.isdecimal() and len(text) <= 20:
        return int(text)
    return None
