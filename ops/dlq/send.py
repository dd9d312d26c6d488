"""Sending one letter's copy back: to the source queue, or re-put on the event bus.

The copy carries the update's version when the letter has one, so a replayed update is not taken
for a newer one than it is: on the queue as the message attribute ``version`` (Number), on the bus
as ``detail.version`` (unless the detail already has one), with the event's original ``time``.
"""

from __future__ import annotations

import copy
import hashlib
import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ops.dlq.letters import Letter, Target
from ops.dlq.routes import BusRoutes, NoRoute

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, SendMessageRequestTypeDef

VERSION_ATTRIBUTE = "version"


class Rejected(Exception):
    """The destination did not take the copy (PutEvents answered with a failed entry)."""


def reput_event(letter: Letter, target: Target) -> dict[str, Any]:
    """The event as it will be re-put: the original, with ``detail.version`` set from the letter."""
    event = copy.deepcopy(target.event)
    detail = event["detail"]
    if letter.version is not None and VERSION_ATTRIBUTE not in detail:
        detail[VERSION_ATTRIBUTE] = letter.version
    return event


def _queue_attributes(letter: Letter, target: Target) -> dict[str, MessageAttributeValueTypeDef]:
    attributes = dict(target.attributes)
    if letter.version is not None and VERSION_ATTRIBUTE not in attributes:
        attributes[VERSION_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(letter.version)}
    return attributes


class Sender:
    """Knows the destinations of one run; ``destination`` says where a letter would go (or raises
    NoRoute), ``send`` sends its copy and returns the copy's message or event id."""

    def __init__(
        self,
        sqs: SQSClient,
        events: EventBridgeClient | None,
        *,
        source_queue_url: str | None,
        routes: BusRoutes | None,
        source_queue_problem: str | None = None,
    ) -> None:
        self.sqs = sqs
        self.events = events
        self.source_queue_url = source_queue_url
        self.source_queue_problem = source_queue_problem  # why no letter may go there (see routes)
        self.routes = routes

    def destination(self, letter: Letter) -> str:
        target = letter.target
        if target is None:
            raise NoRoute(f"not replayable: {letter.unreplayable}")
        if target.kind == "queue":
            if not self.source_queue_url:
                raise NoRoute("no source queue: pass --source-queue-url or set SOURCE_QUEUE_URL")
            if self.source_queue_problem:
                raise NoRoute(self.source_queue_problem)
            return f"queue {self.source_queue_url}"
        if self.routes is None:
            raise NoRoute("no event bus: pass --event-bus or set EVENT_BUS_NAME")
        rule = self.routes.rule_for(reput_event(letter, target))
        return f"bus {self.routes.bus} (rule {rule})"

    def send(self, letter: Letter) -> str:
        """Sends the copy; raises on any failure (the letter then stays in the DLQ)."""
        target = letter.target
        if target is None:
            raise NoRoute(f"not replayable: {letter.unreplayable}")
        if target.kind == "queue":
            return self._send_to_queue(letter, target)
        return self._put_on_bus(letter, target)

    def _send_to_queue(self, letter: Letter, target: Target) -> str:
        if not self.source_queue_url:
            raise NoRoute("no source queue")
        request: SendMessageRequestTypeDef = {"QueueUrl": self.source_queue_url, "MessageBody": target.body}
        attributes = _queue_attributes(letter, target)
        if attributes:
            request["MessageAttributes"] = attributes
        if self.source_queue_url.endswith(".fifo"):
            # the group producers use: the thread or the conversation (one group per target, in order)
            request["MessageGroupId"] = (letter.thread_id or letter.conversation_id or "replay")[:128]
            # The same letter re-sent within SQS's 5-minute window (a rerun after an interruption
            # between send and delete) is dropped as a duplicate.
            request["MessageDeduplicationId"] = hashlib.sha256(
                f"replay:{letter.message_id}:{letter.sent_at.timestamp()}".encode()
            ).hexdigest()
        return self.sqs.send_message(**request)["MessageId"]

    def _put_on_bus(self, letter: Letter, target: Target) -> str:
        if self.routes is None or self.events is None:
            raise NoRoute("no event bus")
        event = reput_event(letter, target)
        entry: PutEventsRequestEntryTypeDef = {
            "Source": event["source"],
            "DetailType": event["detail-type"],
            "Detail": json.dumps(event["detail"], ensure_ascii=False),
            "EventBusName": self.routes.bus,
        }
        resources = event.get("resources")
        if isinstance(resources, list) and resources:
            entry["Resources"] = [item for item in resources if isinstance(item, str)]
        original_time = _event_time(event.get("time"))
        if original_time is not None:
            entry["Time"] = original_time
        answer = self.events.put_events(Entries=[entry])
        (result,) = answer["Entries"]
        if answer.get("FailedEntryCount", 0) or "EventId" not in result:
            raise Rejected(
                f"PutEvents rejected the event: {result.get('ErrorCode')}: {result.get('ErrorMessage')}"
            )
        return result["EventId"]


def _event_time(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None
