"""Lambda event and context shapes, built the way the Lambda service builds them.

Used by the tests and the local runner so both feed the handler exactly what SQS and
EventBridge would.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class LocalContext:
    """A Lambda context whose remaining time counts down from ``timeout_s``."""

    timeout_s: float = 60.0
    function_name: str = "ModifyThreadFunction"
    memory_limit_in_mb: int = 256
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    started: float = field(default_factory=time.monotonic)

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    @property
    def function_version(self) -> str:
        return "$LATEST"

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.started + self.timeout_s - time.monotonic()) * 1000))


def sqs_record(
    body: str,
    *,
    message_id: str | None = None,
    queue_name: str | None = None,
    group_id: str | None = None,
    receive_count: int = 1,
    receipt_handle: str | None = None,
    sent_ms: int | None = None,
) -> dict[str, Any]:
    """One record of a Lambda SQS event; FIFO attributes when ``group_id`` is given (on a FIFO queue
    unless ``queue_name`` names a standard one: fair queues carry a group id too)."""
    if queue_name is None:
        queue_name = "portkey-thread-updater-SourceQueue" + (".fifo" if group_id is not None else "")
    now_ms = sent_ms if sent_ms is not None else int(time.time() * 1000)
    message_id = message_id or str(uuid.uuid4())
    attributes: dict[str, str] = {
        "ApproximateReceiveCount": str(receive_count),
        "SentTimestamp": str(now_ms),
        "SenderId": "AIDAIENQZJOLO23YVJ4VO",
        "ApproximateFirstReceiveTimestamp": str(now_ms),
    }
    if group_id is not None:
        attributes["MessageGroupId"] = group_id
        attributes["MessageDeduplicationId"] = hashlib.sha256(body.encode()).hexdigest()
        attributes["SequenceNumber"] = str(18849496460467696128 + now_ms)
    return {
        "messageId": message_id,
        "receiptHandle": receipt_handle or f"AQEB{uuid.uuid4().hex}",
        "body": body,
        "attributes": attributes,
        "messageAttributes": {},
        "md5OfBody": hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{queue_name}",
        "awsRegion": REGION,
    }


def sqs_event(
    bodies: Iterable[str | Mapping[str, Any]], *, group_ids: Iterable[str] | None = None
) -> dict[str, Any]:
    """A Lambda SQS event; dict bodies are JSON-encoded, ``group_ids`` makes it a FIFO batch."""
    texts = [body if isinstance(body, str) else json.dumps(body) for body in bodies]
    groups: list[str | None] = list(group_ids) if group_ids is not None else [None] * len(texts)
    queue = (
        "portkey-thread-updater-SourceQueue.fifo"
        if group_ids is not None
        else "portkey-thread-updater-SourceQueue"
    )
    return {
        "Records": [
            sqs_record(text, group_id=group, queue_name=queue)
            for text, group in zip(texts, groups, strict=True)
        ]
    }


def eventbridge_event(
    detail: Mapping[str, Any] | Any, *, source: str = "com.example.threads"
) -> dict[str, Any]:
    """An EventBridge event as delivered to a Lambda target (or as the body of an SQS target)."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "ModifyThread",
        "source": source,
        "account": ACCOUNT,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": REGION,
        "resources": [],
        "detail": detail,
    }
