"""Operator commands for the dead-letter queue: ``dlq inspect`` and ``dlq replay``.

Run as ``python -m thread_updater dlq ...`` (with ``src/`` on ``sys.path``). Only boto3 and the
standard library are used; AWS endpoints and credentials come from boto3's own configuration
(``AWS_ENDPOINT_URL`` works for moto).

A dead-letter queue message has one of three shapes (docs/contract.md, "Dead-letter message"):

- **envelope** -- the function's JSON letter (``category``, ``error``, ``status``, ``thread_id``,
  ``source``, ``message_id``, ``payload``, ``attempts``, ``failed_at``);
- **redriven** -- the raw original source-queue body, moved by the redrive policy after
  ``maxReceiveCount`` receives (category ``exhausted``); a raw EventBridge event carrying
  EventBridge's ``ERROR_CODE``/``RULE_ARN`` attributes (the EventBridge delivery DLQ) is category
  ``undelivered``;
- **destination** -- a Lambda on-failure destination record for an asynchronous (EventBridge)
  invoke (``requestContext``, ``requestPayload``, ``responsePayload``; category ``async-failure``).

Replay is send-then-delete: a message leaves the DLQ only after the source queue (or the event
bus) accepted its copy, so an interruption at worst leaves a duplicate, never a loss.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        SendMessageRequestTypeDef,
    )

Shape = Literal["envelope", "redriven", "destination"]
KNOWN_CATEGORIES = ("validation", "rejected", "exhausted", "undelivered", "async-failure")
_ENVELOPE_KEYS = frozenset({"category", "error", "source", "message_id", "payload"})
_EVENTBRIDGE_DLQ_ATTRIBUTES = frozenset({"ERROR_CODE", "RULE_ARN", "TARGET_ARN"})
_AGE = re.compile(r"^\s*(\d+)\s*([smhd])\s*$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_EPOCH = datetime.fromtimestamp(0, UTC)
_NOT_RELEASED = "warning: {} message(s) stay invisible until their visibility timeout ends"


# --------------------------------------------------------------------------- classification


@dataclass(frozen=True)
class Target:
    """Where a replay sends a letter: the source queue (body as-is) or the event bus (one entry)."""

    kind: Literal["queue", "bus"]
    body: str = ""
    attributes: dict[str, MessageAttributeValueTypeDef] = field(default_factory=dict)
    event_source: str = ""
    detail_type: str = ""
    detail: str = ""
    resources: tuple[str, ...] = ()


@dataclass(frozen=True)
class Letter:
    """One DLQ message, classified."""

    message_id: str
    receipt_handle: str
    shape: Shape
    category: str
    status: int | None
    thread_id: str | None
    source: str
    reason: str
    failed_at: datetime
    receive_count: int
    sent_timestamp: str
    target: Target | None
    unreplayable: str | None = None

    def summary(self) -> dict[str, Any]:
        return {
            "message_id": self.message_id,
            "shape": self.shape,
            "category": self.category,
            "status": self.status,
            "thread_id": self.thread_id,
            "source": self.source,
            "reason": self.reason,
            "failed_at": _iso(self.failed_at),
            "receive_count": self.receive_count,
        }


def _iso(moment: datetime) -> str:
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


def _is_eventbridge_event(document: object) -> bool:
    return isinstance(document, dict) and "detail-type" in document and "detail" in document


def _thread_id_of(document: object) -> str | None:
    """The update's thread id: top level, or in an EventBridge event's ``detail``."""
    if _is_eventbridge_event(document):
        assert isinstance(document, dict)
        document = document["detail"]
    if isinstance(document, dict):
        thread_id = document.get("thread_id")
        if isinstance(thread_id, str) and thread_id:
            return thread_id[:256]
    return None


def _bus_target(event: object) -> Target | str:
    """A PutEvents entry re-creating ``event``, or why that is impossible."""
    if not isinstance(event, dict):
        return "the EventBridge event is not a JSON object"
    source, detail_type, detail = event.get("source"), event.get("detail-type"), event.get("detail")
    if not isinstance(source, str) or not source or not isinstance(detail_type, str) or not detail_type:
        return "the EventBridge event has no source/detail-type"
    if not isinstance(detail, dict):
        return "the EventBridge event's detail is not a JSON object"
    resources = event.get("resources")
    return Target(
        "bus",
        event_source=source,
        detail_type=detail_type,
        detail=json.dumps(detail, ensure_ascii=False),
        resources=tuple(r for r in resources if isinstance(r, str)) if isinstance(resources, list) else (),
    )


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


def classify(message: MessageTypeDef) -> Letter:
    """Recognise the shape of one received DLQ message; never raises for odd bodies."""
    body = message.get("Body", "")
    system = message.get("Attributes", {})
    sent_timestamp = system.get("SentTimestamp", "0")
    try:
        sent_at = datetime.fromtimestamp(int(sent_timestamp) / 1000, UTC)
    except (ValueError, OverflowError, OSError):
        sent_at = _EPOCH
    common: dict[str, Any] = {
        "message_id": message.get("MessageId", ""),
        "receipt_handle": message.get("ReceiptHandle", ""),
        "receive_count": int(system.get("ApproximateReceiveCount", "0") or 0),
        "sent_timestamp": sent_timestamp,
    }
    document = _json(body)

    if isinstance(document, dict) and document.keys() >= _ENVELOPE_KEYS:
        source = str(document.get("source"))
        payload = document.get("payload")
        payload_text = payload if isinstance(payload, str) else json.dumps(payload)
        status = document.get("status")
        thread_id = document.get("thread_id")
        target: Target | str
        if source == "eventbridge":
            target = _bus_target(_json(payload_text))
        else:
            target = Target("queue", body=payload_text)
        return Letter(
            **common,
            shape="envelope",
            category=str(document.get("category")),
            status=status if isinstance(status, int) and not isinstance(status, bool) else None,
            thread_id=thread_id if isinstance(thread_id, str) else _thread_id_of(_json(payload_text)),
            source=source,
            reason=str(document.get("error") or ""),
            failed_at=_parse_time(document.get("failed_at"), sent_at),
            target=target if isinstance(target, Target) else None,
            unreplayable=target if isinstance(target, str) else None,
        )

    if isinstance(document, dict) and "requestContext" in document and "requestPayload" in document:
        context = document.get("requestContext")
        context = context if isinstance(context, dict) else {}
        response = document.get("responsePayload")
        condition = str(context.get("condition") or "failed")
        if isinstance(response, dict) and (response.get("errorType") or response.get("errorMessage")):
            reason = f"{condition}: {response.get('errorType', 'Error')}: {response.get('errorMessage', '')}"
        else:
            reason = condition
        request = document.get("requestPayload")
        target = _bus_target(request)
        return Letter(
            **common,
            shape="destination",
            category="async-failure",
            status=None,
            thread_id=_thread_id_of(request),
            source="eventbridge",
            reason=reason,
            failed_at=_parse_time(document.get("timestamp"), sent_at),
            target=target if isinstance(target, Target) else None,
            unreplayable=target if isinstance(target, str) else None,
        )

    attributes = message.get("MessageAttributes", {})
    if _EVENTBRIDGE_DLQ_ATTRIBUTES & attributes.keys() and _is_eventbridge_event(document):
        code = _string_attribute(message, "ERROR_CODE") or "delivery failed"
        detail = _string_attribute(message, "ERROR_MESSAGE")
        target = _bus_target(document)
        return Letter(
            **common,
            shape="redriven",
            category="undelivered",
            status=None,
            thread_id=_thread_id_of(document),
            source="eventbridge",
            reason=f"EventBridge could not deliver the event: {code}" + (f": {detail}" if detail else ""),
            failed_at=sent_at,
            target=target if isinstance(target, Target) else None,
            unreplayable=target if isinstance(target, str) else None,
        )

    return Letter(
        **common,
        shape="redriven",
        category="exhausted",
        status=None,
        thread_id=_thread_id_of(document),
        source="sqs",
        reason="not applied after maxReceiveCount receives; moved here by the source queue's redrive policy",
        failed_at=sent_at,
        target=Target("queue", body=body, attributes=_passthrough_attributes(message)),
    )


# --------------------------------------------------------------------------- reading the queue


class Scanner:
    """Reads a queue page by page without deleting: every received message stays invisible
    (``visibility_timeout``) until ``release()`` makes it visible again, so later receives
    reach the messages behind it. Deleted messages must be ``forget()``-ten first."""

    def __init__(
        self, sqs: SQSClient, queue_url: str, *, visibility_timeout: int, wait_seconds: int, max_messages: int
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.visibility_timeout = visibility_timeout
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        self.held: dict[str, str] = {}  # message id -> latest receipt handle

    def approximate_depth(self) -> int | None:
        try:
            answer = self.sqs.get_queue_attributes(
                QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )
            return int(answer["Attributes"]["ApproximateNumberOfMessages"])
        except Exception:  # only used for display
            return None

    def pages(self) -> Iterator[list[MessageTypeDef]]:
        received = 0
        while received < self.max_messages:
            answer = self.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.max_messages - received),
                VisibilityTimeout=self.visibility_timeout,
                WaitTimeSeconds=self.wait_seconds,
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            fresh: list[MessageTypeDef] = []
            for message in answer.get("Messages", []):
                message_id = message.get("MessageId", "")
                if message_id not in self.held:
                    fresh.append(message)
                self.held[message_id] = message.get("ReceiptHandle", "")
            if not fresh:  # empty queue, or only messages whose visibility ran out: done
                return
            received += len(fresh)
            yield fresh

    def forget(self, message_id: str) -> None:
        self.held.pop(message_id, None)

    def release(self) -> int:
        """Make every held message visible again; returns how many could not be released
        (those become visible anyway when their visibility timeout ends)."""
        from botocore.exceptions import BotoCoreError, ClientError

        items = list(self.held.items())
        failed = 0
        for start in range(0, len(items), 10):
            chunk = items[start : start + 10]
            try:
                answer = self.sqs.change_message_visibility_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": handle, "VisibilityTimeout": 0}
                        for index, (_, handle) in enumerate(chunk)
                    ],
                )
                failed += len(answer.get("Failed", []))
            except (BotoCoreError, ClientError):
                failed += len(chunk)
        self.held.clear()
        return failed


# --------------------------------------------------------------------------- inspect


@dataclass
class Group:
    category: str
    status: int | None
    thread_id: str | None
    letters: list[Letter] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        newest_first = sorted(self.letters, key=lambda letter: letter.failed_at, reverse=True)
        reasons: list[str] = []
        for letter in newest_first:
            if letter.reason not in reasons:
                reasons.append(letter.reason)
        return {
            "category": self.category,
            "status": self.status,
            "thread_id": self.thread_id,
            "count": len(self.letters),
            "newest": _iso(newest_first[0].failed_at),
            "oldest": _iso(newest_first[-1].failed_at),
            "sources": sorted({letter.source for letter in self.letters}),
            "reasons": reasons[:3],
            "distinct_reasons": len(reasons),
        }


def group_letters(letters: Sequence[Letter]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int | None, str | None], Group] = {}
    for letter in letters:
        key = (letter.category, letter.status, letter.thread_id)
        groups.setdefault(key, Group(*key)).letters.append(letter)
    rendered = [group.to_json() for group in groups.values()]
    rendered.sort(key=lambda group: group["newest"], reverse=True)
    rendered.sort(key=lambda group: group["count"], reverse=True)
    return rendered


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(groups: Sequence[dict[str, Any]]) -> str:
    header = ("CATEGORY", "STATUS", "THREAD", "COUNT", "NEWEST", "NEWEST REASON")
    rows = [header]
    for group in groups:
        reason = _clip(group["reasons"][0] if group["reasons"] else "", 100)
        if group["distinct_reasons"] > 1:
            reason += f" (+{group['distinct_reasons'] - 1} other reason(s))"
        rows.append(
            (
                group["category"],
                "-" if group["status"] is None else str(group["status"]),
                _clip(group["thread_id"] or "-", 40),
                str(group["count"]),
                group["newest"],
                reason,
            )
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def run_inspect(args: argparse.Namespace, sqs: SQSClient, out: TextIO) -> int:
    scanner = Scanner(
        sqs,
        args.dlq_url,
        visibility_timeout=args.visibility_timeout,
        wait_seconds=args.wait_seconds,
        max_messages=args.max_messages,
    )
    depth = scanner.approximate_depth()
    letters: list[Letter] = []
    try:
        for page in scanner.pages():
            letters.extend(classify(message) for message in page)
    finally:
        not_released = scanner.release()
    groups = group_letters(letters)
    shapes = {
        shape: sum(letter.shape == shape for letter in letters)
        for shape in ("envelope", "redriven", "destination")
    }
    if args.json:
        document = {
            "queue_url": args.dlq_url,
            "read": len(letters),
            "approximate_messages": depth,
            "truncated": len(letters) >= args.max_messages,
            "not_released": not_released,
            "shapes": shapes,
            "groups": groups,
            "messages": [letter.summary() for letter in letters],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False), file=out)
        return 0
    approx = "?" if depth is None else str(depth)
    print(f"DLQ {args.dlq_url}: read {len(letters)} message(s), about {approx} in the queue", file=out)
    if not letters:
        print("(empty)", file=out)
        return 0
    print(render_table(groups), file=out)
    print(
        "shapes: "
        + ", ".join(f"{name} {count}" for name, count in shapes.items())
        + (
            f"; only the first {args.max_messages} were read (--max-messages)"
            if len(letters) >= args.max_messages
            else ""
        ),
        file=out,
    )
    if not_released:
        print(_NOT_RELEASED.format(not_released), file=out)
    return 0


# --------------------------------------------------------------------------- replay


def parse_age(text: str) -> timedelta:
    """``15m``, ``2h``, ``30s``, ``7d`` -> timedelta (argparse type)."""
    match = _AGE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid age {text!r}: use a number and s, m, h or d, e.g. 15m or 2h"
        )
    return timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})


@dataclass(frozen=True)
class Selection:
    categories: frozenset[str] = frozenset()
    statuses: frozenset[int] = frozenset()
    thread_ids: frozenset[str] = frozenset()
    older_than: timedelta | None = None
    newer_than: timedelta | None = None

    def matches(self, letter: Letter, now: datetime) -> bool:
        age = now - letter.failed_at
        return (
            (not self.categories or letter.category in self.categories)
            and (not self.statuses or letter.status in self.statuses)
            and (not self.thread_ids or letter.thread_id in self.thread_ids)
            and (self.older_than is None or age > self.older_than)
            and (self.newer_than is None or age < self.newer_than)
        )


class StopRequest:
    """Ctrl-C (SIGINT) during a replay: the first one asks to stop after the current message,
    a second one aborts at once (at worst leaving a duplicate: the copy is sent, the letter stays)."""

    def __init__(self, err: TextIO) -> None:
        self.requested = False
        self._err = err
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\ninterrupted: stopping after the current message (Ctrl-C again aborts at once)",
            file=self._err,
            flush=True,
        )


class Progress:
    """A one-line stderr progress bar, redrawn (carriage return) after every scanned letter."""

    WIDTH = 30

    def __init__(self, stream: TextIO, total: int, enabled: bool) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.enabled = enabled
        self._drawn = False
        self._line = ""

    def update(self, scanned: int, replayed: int, failed: int) -> None:
        if not self.enabled:
            return
        self.total = max(self.total, scanned)
        filled = self.WIDTH * scanned // self.total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"\rreplay [{bar}] {scanned}/{self.total} scanned, {replayed} replayed, {failed} failed"
        if line == self._line:
            return
        self._line = line
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()


@dataclass
class ReplayReport:
    dry_run: bool
    scanned: int = 0
    selected: int = 0
    replayed: int = 0
    failed: int = 0
    skipped: int = 0
    sent_not_deleted: int = 0
    interrupted: bool = False
    stopped_on_failure: bool = False
    not_released: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "scanned": self.scanned,
            "selected": self.selected,
            "replayed": self.replayed,
            "failed": self.failed,
            "skipped": self.skipped,
            "sent_not_deleted": self.sent_not_deleted,
            "left_in_dlq": self.scanned - self.replayed,
            "interrupted": self.interrupted,
            "stopped_on_failure": self.stopped_on_failure,
            "not_released": self.not_released,
            "messages": self.messages,
        }


class Replayer:
    def __init__(
        self,
        sqs: SQSClient,
        events: EventBridgeClient | None,
        *,
        source_queue_url: str | None,
        event_bus: str | None,
    ) -> None:
        self.sqs = sqs
        self.events = events
        self.source_queue_url = source_queue_url
        self.event_bus = event_bus

    def destination(self, letter: Letter) -> str:
        """Where ``letter`` would go, or raises ValueError saying why it cannot be replayed."""
        if letter.target is None:
            raise ValueError(f"not replayable: {letter.unreplayable}")
        if letter.target.kind == "queue":
            if not self.source_queue_url:
                raise ValueError("no source queue: pass --source-queue-url or set SOURCE_QUEUE_URL")
            return f"queue {self.source_queue_url}"
        if not self.event_bus:
            raise ValueError("no event bus: pass --event-bus or set EVENT_BUS_NAME")
        return f"bus {self.event_bus}"

    def send(self, letter: Letter) -> None:
        """Sends the copy; raises on any failure (the letter then stays in the DLQ)."""
        target = letter.target
        assert target is not None
        if target.kind == "queue":
            assert self.source_queue_url
            request: SendMessageRequestTypeDef = {
                "QueueUrl": self.source_queue_url,
                "MessageBody": target.body,
            }
            if target.attributes:
                request["MessageAttributes"] = target.attributes
            if self.source_queue_url.endswith(".fifo"):
                request["MessageGroupId"] = (letter.thread_id or "replay")[:128]
                # The same letter re-sent within SQS's 5-minute window (a rerun after an
                # interruption between send and delete) is dropped as a duplicate.
                request["MessageDeduplicationId"] = hashlib.sha256(
                    f"replay:{letter.message_id}:{letter.sent_timestamp}".encode()
                ).hexdigest()
            self.sqs.send_message(**request)
            return
        assert self.events is not None
        assert self.event_bus
        entry: PutEventsRequestEntryTypeDef = {
            "Source": target.event_source,
            "DetailType": target.detail_type,
            "Detail": target.detail,
            "EventBusName": self.event_bus,
        }
        if target.resources:
            entry["Resources"] = list(target.resources)
        answer = self.events.put_events(Entries=[entry])
        if answer.get("FailedEntryCount", 0):
            (result,) = answer["Entries"]
            raise RuntimeError(
                f"PutEvents rejected the event: {result.get('ErrorCode')}: {result.get('ErrorMessage')}"
            )


def _error_text(error: BaseException) -> str:
    return _clip(f"{type(error).__name__}: {error}", 300)


class ReplayRun:
    """One ``dlq replay``: scan, select, send-then-delete, release the rest, report."""

    def __init__(
        self,
        args: argparse.Namespace,
        sqs: SQSClient,
        events: EventBridgeClient | None,
        out: TextIO,
        err: TextIO,
    ) -> None:
        self.args = args
        self.sqs = sqs
        self.out = out
        self.err = err
        self.selection = Selection(
            categories=frozenset(args.category or ()),
            statuses=frozenset(args.status or ()),
            thread_ids=frozenset(args.thread_id or ()),
            older_than=args.older_than,
            newer_than=args.newer_than,
        )
        self.replayer = Replayer(
            sqs, events, source_queue_url=args.source_queue_url, event_bus=args.event_bus
        )
        self.scanner = Scanner(
            sqs,
            args.dlq_url,
            visibility_timeout=args.visibility_timeout,
            wait_seconds=args.wait_seconds,
            max_messages=args.max_messages,
        )
        self.report = ReplayReport(dry_run=args.dry_run)
        self.limit: int | None = args.limit
        self.now = datetime.now(UTC)

    def finished(self) -> bool:
        report = self.report
        return (
            report.interrupted
            or report.stopped_on_failure
            or (self.limit is not None and report.selected >= self.limit)
        )

    def record(self, letter: Letter, result: str, detail: str = "") -> None:
        entry = {**letter.summary(), "result": result}
        if detail:
            entry["detail"] = detail
        self.report.messages.append(entry)
        if not self.args.json and (self.args.dry_run or result != "replayed"):
            status = "-" if letter.status is None else letter.status
            print(
                f"{result:<16} {letter.message_id}  {letter.category}/{status}"
                f"  thread {letter.thread_id or '-'}  {detail}",
                file=self.out,
            )

    def process(self, letter: Letter) -> None:
        """Replays one selected letter: send, and only when that worked, delete."""
        from botocore.exceptions import BotoCoreError, ClientError

        report = self.report
        report.selected += 1
        try:
            where = self.replayer.destination(letter)
        except ValueError as problem:
            report.skipped += 1
            self.record(letter, "skipped", str(problem))
            return
        if self.args.dry_run:
            self.record(letter, "would-replay", f"-> {where}")
            return
        try:
            self.replayer.send(letter)
        except (BotoCoreError, ClientError, RuntimeError) as error:
            report.failed += 1
            report.stopped_on_failure = True
            self.record(letter, "failed", f"send to {where} failed, kept in the DLQ: {_error_text(error)}")
            return
        try:
            self.sqs.delete_message(QueueUrl=self.args.dlq_url, ReceiptHandle=letter.receipt_handle)
        except (BotoCoreError, ClientError) as error:
            report.sent_not_deleted += 1
            self.record(letter, "sent-not-deleted", f"sent, but still in the DLQ: {_error_text(error)}")
            return
        self.scanner.forget(letter.message_id)
        report.replayed += 1
        self.record(letter, "replayed", f"-> {where}")

    def run(self) -> int:
        args, report = self.args, self.report
        depth = self.scanner.approximate_depth() or 0
        wanted = args.progress if args.progress is not None else (self.err.isatty() and not args.json)
        progress = Progress(
            self.err, min(depth, args.max_messages), enabled=bool(wanted) and not args.dry_run
        )
        with StopRequest(self.err) as stop:
            try:
                for page in self.scanner.pages():
                    for letter in sorted((classify(m) for m in page), key=lambda item: item.failed_at):
                        report.scanned += 1
                        report.interrupted = report.interrupted or stop.requested
                        if not self.finished() and self.selection.matches(letter, self.now):
                            self.process(letter)
                        progress.update(report.scanned, report.replayed, report.failed)
                    if self.finished():
                        break
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                report.interrupted = report.interrupted or stop.requested
                progress.update(report.scanned, report.replayed, report.failed)
                progress.close()
                report.not_released = self.scanner.release()  # letters not replayed stay in the DLQ
        self.print_report()
        if report.interrupted:
            return 130
        return 1 if report.failed or report.sent_not_deleted or report.skipped else 0

    def print_report(self) -> None:
        report = self.report
        if self.args.json:
            print(json.dumps(report.to_json(), indent=2, ensure_ascii=False), file=self.out)
            return
        if report.dry_run:
            done = f"would replay {report.selected - report.skipped}"
        else:
            done = f"replayed {report.replayed}, failed {report.failed}"
        line = (
            f"{'DRY RUN: ' if report.dry_run else ''}scanned {report.scanned}, selected {report.selected}, "
            f"{done}, skipped {report.skipped}, left in the DLQ {report.scanned - report.replayed}"
        )
        if report.sent_not_deleted:
            line += f", sent but not deleted {report.sent_not_deleted} (replayed twice if you rerun)"
        if report.interrupted:
            line += "; INTERRUPTED"
        if report.stopped_on_failure:
            line += "; stopped at the first failed send"
        print(line, file=self.out)
        if report.not_released:
            print(_NOT_RELEASED.format(report.not_released), file=self.out)


# --------------------------------------------------------------------------- command line

INSPECT_HELP = """\
Read the dead-letter queue WITHOUT deleting anything and print a table grouped by category,
status and thread id, with counts and the newest reasons (--json: machine-readable).

Messages are received with a short visibility timeout and made visible again at the end, so
they stay in the queue; while inspect runs they are briefly invisible to other readers.
Every read increases a message's ApproximateReceiveCount (harmless unless the DLQ itself has
a redrive policy). At most --max-messages are read. On a FIFO DLQ, messages behind a held
message of the same group are not visible until it is released.

Categories: validation, rejected (function's envelope), exhausted (raw source-queue body moved
by the redrive policy), undelivered (EventBridge could not deliver the event),
async-failure (Lambda on-failure destination record of an EventBridge invoke)."""

REPLAY_HELP = """\
Send selected dead letters back where they came from, then delete them from the DLQ.

  envelope, source sqs         -> its payload to the source queue (--source-queue-url)
  envelope, source eventbridge -> the event re-put to the bus (--event-bus): source, detail-type, detail
  exhausted (raw body)         -> the body (and message attributes) to the source queue, as-is
  async-failure / undelivered  -> the original EventBridge event re-put to the bus

A letter is deleted ONLY after its copy was accepted; the first failed send stops the replay
(that letter stays). Ctrl-C stops after the current message; a second Ctrl-C aborts at once.
At worst a letter is replayed twice, never lost. Letters not selected are made visible again.
Without filters every letter read is replayed; `validation` letters fail again unless the
reason they were invalid is gone (e.g. a fixed producer or a relaxed limit).
On a FIFO source queue the copy gets MessageGroupId = thread id (or "replay") and a
deduplication id derived from the letter, so a rerun within 5 minutes is not duplicated.
Filters combine with AND; a repeated filter matches any of its values. Ages (15m, 2h, 7d)
are measured from the failure time (the letter's failed_at, a destination record's
timestamp, or the message's SentTimestamp).

Exit status: 0 every selected letter was replayed (or would be, with --dry-run); 1 a send
failed, a letter was skipped (no target for it) or could not be deleted after its send;
130 interrupted; 2 usage error."""


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _count(text: str) -> int:
    """A positive integer (argparse type)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dlq-url", default=_env("DLQ_URL"), help="dead-letter queue URL (default: $DLQ_URL)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--max-messages",
        type=_count,
        default=1000,
        metavar="N",
        help="read at most N messages (default: 1000)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=60,
        choices=range(43201),
        metavar="SECONDS",
        help="how long read messages stay hidden if the command dies (default: 60)",
    )
    parser.add_argument(
        "--wait-seconds",
        type=int,
        default=1,
        choices=range(21),
        metavar="SECONDS",
        help="long-poll wait per receive, 0-20 (default: 1; 0 may miss messages on a real queue)",
    )


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Adds ``dlq inspect|replay`` to the top-level command parser."""
    dlq = commands.add_parser(
        "dlq",
        help="inspect or replay the dead-letter queue",
        description="Inspect the dead-letter queue without deleting, or replay dead letters "
        "(send-then-delete: at worst a duplicate, never a loss). "
        "See `dlq inspect --help` and `dlq replay --help`.",
    )
    actions = dlq.add_subparsers(dest="action", required=True, metavar="ACTION")
    formatter = argparse.RawDescriptionHelpFormatter

    inspect = actions.add_parser(
        "inspect",
        help="summarise the DLQ without deleting",
        description=INSPECT_HELP,
        formatter_class=formatter,
    )
    _common_options(inspect)
    inspect.set_defaults(run=_run)

    replay = actions.add_parser(
        "replay",
        help="send dead letters back, then delete them",
        description=REPLAY_HELP,
        formatter_class=formatter,
    )
    _common_options(replay)
    replay.add_argument(
        "--source-queue-url",
        default=_env("SOURCE_QUEUE_URL"),
        metavar="URL",
        help="source queue URL (default: $SOURCE_QUEUE_URL)",
    )
    replay.add_argument(
        "--event-bus",
        default=_env("EVENT_BUS_NAME"),
        metavar="NAME",
        help="event bus name (default: $EVENT_BUS_NAME)",
    )
    replay.add_argument(
        "--category", action="append", metavar="NAME", help=f"one of {', '.join(KNOWN_CATEGORIES)}"
    )
    replay.add_argument("--status", action="append", type=int, metavar="CODE", help="HTTP status, e.g. 404")
    replay.add_argument("--thread-id", action="append", metavar="ID", help="thread id")
    replay.add_argument(
        "--older-than", type=parse_age, metavar="AGE", help="failed more than AGE ago (15m, 2h, 7d)"
    )
    replay.add_argument("--newer-than", type=parse_age, metavar="AGE", help="failed less than AGE ago")
    replay.add_argument(
        "--limit",
        type=_count,
        metavar="N",
        help="stop after N selected letters (replayed, skipped or failed)",
    )
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed; change nothing")
    replay.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stderr progress bar (default: when stderr is a terminal)",
    )
    replay.set_defaults(run=_run)


def _region_from_url(url: str) -> str | None:
    match = re.match(r"^https://sqs\.([a-z0-9-]+)\.amazonaws\.com", url)
    return match.group(1) if match else None


def _run(args: argparse.Namespace) -> int:
    out, err = sys.stdout, sys.stderr
    if not args.dlq_url:
        print("error: no dead-letter queue: pass --dlq-url or set DLQ_URL", file=err)
        return 2

    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    session = boto3.session.Session()
    region = session.region_name or _region_from_url(args.dlq_url)
    config = Config(
        connect_timeout=5,
        read_timeout=max(30, args.wait_seconds + 10),
        retries={"mode": "standard", "max_attempts": 3},
    )
    sqs: SQSClient = session.client("sqs", region_name=region, config=config)
    try:
        if args.action == "inspect":
            return run_inspect(args, sqs, out)
        events: EventBridgeClient | None = (
            session.client("events", region_name=region, config=config) if args.event_bus else None
        )
        return ReplayRun(args, sqs, events, out, err).run()
    except (BotoCoreError, ClientError) as error:
        print(f"error: {_error_text(error)}", file=err)
        return 1
