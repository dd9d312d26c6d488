"""What a dead-letter queue message is, and where its copy would go on a replay.

A DLQ message has one of three shapes (docs/contract.md, "Dead-letter message"):

- **envelope**: the function's JSON letter, ``thread_updater.deadletter.DeadLetter`` (categories from
  ``thread_updater.deadletter.Category``);
- **redriven**: the raw original source-queue body, moved by the redrive policy after
  ``maxReceiveCount`` receives (category ``exhausted``), or a raw EventBridge event carrying
  EventBridge's ``ERROR_CODE``/``RULE_ARN`` attributes from the rule's delivery DLQ (``undelivered``);
- **destination**: a Lambda on-failure destination record of an asynchronous (EventBridge) invoke
  (``requestContext``, ``requestPayload``, ``responsePayload``; category ``async-failure``).

Classification never raises: an odd body is still a letter (``exhausted``), replayed as-is.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from thread_updater.deadletter import Category, DeadLetter, Source
from thread_updater.jobs import VERSION_ATTRIBUTE
from thread_updater.models import InvalidUpdate, parse_sqs_body

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

Shape = Literal["envelope", "redriven", "destination"]
SHAPES: tuple[Shape, ...] = typing.get_args(Shape)
SOURCES: tuple[Source, ...] = typing.get_args(Source)
EXHAUSTED, UNDELIVERED, ASYNC_FAILURE = "exhausted", "undelivered", "async-failure"
CATEGORIES: tuple[str, ...] = (
    *(category.value for category in Category),
    EXHAUSTED,
    UNDELIVERED,
    ASYNC_FAILURE,
)

ENVELOPE_FIELDS = frozenset(item.name for item in dataclasses.fields(DeadLetter))
# The fields that make a JSON body an envelope. Fields added later (``version``, ``version_source``) are
# optional so that letters written before them are still recognised.
_IDENTIFYING_FIELDS = frozenset({"category", "error", "source", "message_id", "payload"})
if not _IDENTIFYING_FIELDS <= ENVELOPE_FIELDS:  # the schema changed under the tool: fail loudly at import
    raise ImportError(f"DeadLetter no longer has {sorted(_IDENTIFYING_FIELDS - ENVELOPE_FIELDS)}")

_EVENTBRIDGE_DLQ_ATTRIBUTES = frozenset({"ERROR_CODE", "RULE_ARN", "TARGET_ARN"})
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")
_NOT_APPLIED_PREFIX = re.compile(r"^update \S+ not applied: ")
EPOCH = datetime.fromtimestamp(0, UTC)
FIFO_UNVERSIONED = (
    "no version: the body has none, and a FIFO DLQ's SentTimestamp is when the letter was moved, not when "
    "the update was sent"
)


@dataclass(frozen=True, kw_only=True)
class Target:
    """Where a replay sends a letter: the source queue (body as-is) or an event bus (the event)."""

    kind: Literal["queue", "bus"]
    body: str = ""
    attributes: dict[str, MessageAttributeValueTypeDef] = field(default_factory=dict)
    event: dict[str, Any] = field(default_factory=dict)  # the original EventBridge event, for a bus


@dataclass(frozen=True, kw_only=True)
class Letter:
    """One DLQ message, classified."""

    message_id: str
    receipt_handle: str
    shape: Shape
    category: str
    status: int | None
    thread_id: str | None  # a thread update's id
    source: str
    reason: str
    failed_at: datetime
    sent_at: datetime  # when the DLQ received it (SentTimestamp)
    conversation_id: str | None = None  # a conversation update's id (as the function's letters name it)
    receive_count: int
    version: int | None = None  # the update's effective version, when the letter carries one
    version_source: str | None = None
    target: Target | None = None
    unreplayable: str | None = None  # why there is no target
    # Why the letter has no trustworthy version although its copy would be applied: the function would
    # version the copy by its own SentTimestamp, as the newest update of its thread.
    unversioned: str | None = None

    @property
    def target_key(self) -> str | None:
        """Whose letter this is: the thread id, or ``conversation:<id>`` (the state table's key)."""
        if self.conversation_id is not None:
            return f"conversation:{self.conversation_id}"
        return self.thread_id

    def summary(self) -> dict[str, Any]:
        ids: dict[str, Any] = {"thread_id": self.thread_id}
        if self.conversation_id is not None:  # thread letters keep the shape they always had
            ids["conversation_id"] = self.conversation_id
        return {
            "message_id": self.message_id,
            "shape": self.shape,
            "category": self.category,
            "status": self.status,
            **ids,
            "source": self.source,
            "version": self.version,
            "reason": self.reason,
            "failed_at": iso(self.failed_at),
            "receive_count": self.receive_count,
        }

    def replay_order(self) -> tuple[str, bool, int, datetime]:
        """Letters of one target oldest first: by version, falling back to the failure time."""
        return (self.target_key or "", self.version is not None, self.version or 0, self.failed_at)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(value: object, fallback: datetime) -> datetime:
    if isinstance(value, str) and value:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return fallback
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return fallback


def _json(text: str) -> object:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _integer(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _is_eventbridge_event(document: object) -> bool:
    return isinstance(document, dict) and "detail-type" in document and "detail" in document


class _Ids(TypedDict):
    """A letter's target, as the function's own letters name it: one of the two is set."""

    thread_id: str | None
    conversation_id: str | None


def _id_in(document: dict[str, Any], name: str) -> str | None:
    value = document.get(name)
    return value[:256] if isinstance(value, str) and value else None


def _ids_of(document: object) -> _Ids:
    """The update's ``thread_id`` and ``conversation_id`` (each None when absent): top level, or in an
    EventBridge event's ``detail``."""
    if isinstance(document, dict) and _is_eventbridge_event(document):
        document = document["detail"]
    if not isinstance(document, dict):
        return _Ids(thread_id=None, conversation_id=None)
    return _Ids(thread_id=_id_in(document, "thread_id"), conversation_id=_id_in(document, "conversation_id"))


def _bus_target(event: object) -> Target | str:
    """A target re-creating ``event`` on a bus, or why that is impossible."""
    if not isinstance(event, dict):
        return "the EventBridge event is not a JSON object"
    source, detail_type = event.get("source"), event.get("detail-type")
    if not isinstance(source, str) or not source or not isinstance(detail_type, str) or not detail_type:
        return "the EventBridge event has no source/detail-type"
    if not isinstance(event.get("detail"), dict):
        return "the EventBridge event's detail is not a JSON object"
    return Target(kind="bus", event=event)


def _target_fields(target: Target | str) -> dict[str, Any]:
    if isinstance(target, Target):
        return {"target": target}
    return {"unreplayable": target}


def _passthrough_attributes(message: MessageTypeDef) -> dict[str, MessageAttributeValueTypeDef]:
    attributes: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        if "StringValue" in value:
            attributes[name] = {"DataType": value["DataType"], "StringValue": value["StringValue"]}
        elif "BinaryValue" in value:
            attributes[name] = {"DataType": value["DataType"], "BinaryValue": value["BinaryValue"]}
    return attributes


def _string_attribute(message: MessageTypeDef, name: str) -> str:
    value = message.get("MessageAttributes", {}).get(name)
    return str(value.get("StringValue") or "") if value else ""


def _common(message: MessageTypeDef) -> dict[str, Any]:
    system = message.get("Attributes", {})
    try:
        sent_at = datetime.fromtimestamp(int(system.get("SentTimestamp", "0")) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        sent_at = EPOCH
    return {
        "message_id": message.get("MessageId", ""),
        "receipt_handle": message.get("ReceiptHandle", ""),
        "receive_count": int(system.get("ApproximateReceiveCount", "0") or 0),
        "sent_at": sent_at,
    }


def _envelope(document: dict[str, Any], common: dict[str, Any]) -> Letter:
    source = str(document.get("source"))
    payload = document.get("payload")
    payload_text = payload if isinstance(payload, str) else json.dumps(payload)
    ids = _ids_of(document)  # the envelope names its target; an unreadable one's payload may
    if ids["thread_id"] is None and ids["conversation_id"] is None:
        ids = _ids_of(_json(payload_text))
    version_source = document.get("version_source")
    target = (
        _bus_target(_json(payload_text))
        if source == "eventbridge"
        else Target(kind="queue", body=payload_text)
    )
    return Letter(
        **common,
        shape="envelope",
        category=str(document.get("category")),
        status=_integer(document.get("status")),
        **ids,
        source=source,
        reason=str(document.get("error") or ""),
        failed_at=_parse_time(document.get("failed_at"), common["sent_at"]),
        version=_integer(document.get("version")),
        version_source=version_source if isinstance(version_source, str) else None,
        **_target_fields(target),
    )


def _destination(document: dict[str, Any], common: dict[str, Any]) -> Letter:
    """A Lambda on-failure record: the reason is the function's error message (the HTTP status first,
    without the ``update <id> not applied:`` prefix that would push it out of view), then the condition."""
    context = document.get("requestContext")
    condition = str(context.get("condition") or "failed") if isinstance(context, dict) else "failed"
    response = document.get("responsePayload")
    message = ""
    if isinstance(response, dict):
        message = str(response.get("errorMessage") or response.get("errorType") or "")
    message = _NOT_APPLIED_PREFIX.sub("", message)
    status = _HTTP_STATUS.search(message)
    request = document.get("requestPayload")
    return Letter(
        **common,
        shape="destination",
        category=ASYNC_FAILURE,
        status=int(status.group(1)) if status else None,
        **_ids_of(request),
        source="eventbridge",
        reason=f"{message} ({condition})" if message else condition,
        failed_at=_parse_time(document.get("timestamp"), common["sent_at"]),
        **_target_fields(_bus_target(request)),
    )


def _undelivered(message: MessageTypeDef, document: object, common: dict[str, Any]) -> Letter:
    code = _string_attribute(message, "ERROR_CODE") or "delivery failed"
    detail = _string_attribute(message, "ERROR_MESSAGE")
    return Letter(
        **common,
        shape="redriven",
        category=UNDELIVERED,
        status=None,
        **_ids_of(document),
        source="eventbridge",
        reason=f"EventBridge could not deliver the event: {code}" + (f": {detail}" if detail else ""),
        failed_at=common["sent_at"],
        **_target_fields(_bus_target(document)),
    )


def classify(message: MessageTypeDef) -> Letter:
    """Recognise the shape of one received DLQ message; never raises for odd bodies."""
    body = message.get("Body", "")
    common = _common(message)
    document = _json(body)
    if isinstance(document, dict) and document.keys() >= _IDENTIFYING_FIELDS:
        return _envelope(document, common)
    if isinstance(document, dict) and "requestContext" in document and "requestPayload" in document:
        return _destination(document, common)
    if _EVENTBRIDGE_DLQ_ATTRIBUTES & message.get("MessageAttributes", {}).keys() and _is_eventbridge_event(
        document
    ):
        return _undelivered(message, document, common)
    version, version_source, unversioned = _redriven_version(message, body)
    return Letter(
        **common,
        shape="redriven",
        category=EXHAUSTED,
        status=None,
        **_ids_of(document),
        source="sqs",
        reason="not applied after maxReceiveCount receives; moved here by the source queue's redrive policy",
        failed_at=common["sent_at"],
        version=version,
        version_source=version_source,
        unversioned=unversioned,
        target=Target(kind="queue", body=body, attributes=_passthrough_attributes(message)),
    )


def _redriven_version(message: MessageTypeDef, body: str) -> tuple[int | None, str | None, str | None]:
    """The version the function gave a redriven body, and where it came from, read with the function's
    own parser (so ``"version": null`` is no version, as it is for the function): the body's
    ``version``, the ``version`` message attribute, an EventBridge event's ``time``, else its
    SentTimestamp, which a standard queue's redrive keeps; not from a FIFO DLQ, whose SentTimestamp is
    the move's. The third value says why there is no trustworthy version for an update the function
    would apply; all three are None for a body it cannot apply at all (dead-lettered as invalid)."""
    try:
        parsed = parse_sqs_body(body)
    except InvalidUpdate:
        return None, None, None
    if parsed.update.version is not None:
        return parsed.update.version, "body", None
    attribute = message.get("MessageAttributes", {}).get(VERSION_ATTRIBUTE)
    if attribute is not None:
        text = str(attribute.get("StringValue") or "")
        return (int(text), "attribute", None) if text.isdecimal() else (None, None, None)
    if parsed.event_time_ms is not None:
        return parsed.event_time_ms, "event_time", None
    system = message.get("Attributes", {})
    if "MessageGroupId" in system:
        return None, None, FIFO_UNVERSIONED
    sent = system.get("SentTimestamp", "")
    if not sent.isdecimal():
        return None, None, "no version: the body has none and the letter no SentTimestamp"
    return int(sent), "sent_timestamp", None
