"""Shared by the DLQ tool's tests: a DLQ filled the way production fills it, a bus with a rule, and
the tool run in-process through ``ops.dlq.cli.main`` (argv in, exit status and stdout out).

The dead-letter queue is filled with the three shapes it can hold: the function's own envelope
(written by the real ``DeadLetterQueue``), a raw body moved there by a real SQS redrive policy, and a
Lambda on-failure destination record.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_sqs import SQSClient

from ops.dlq.cli import main
from tests.conftest import AwsResources
from thread_updater.deadletter import Category, DeadLetter, DeadLetterQueue, Source
from thread_updater.deadline import Deadline

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT_SOURCE = "com.example.threads"
FAST = ["--wait-seconds", "0"]  # moto answers every receive completely; no long poll needed


def queue_arn(sqs: SQSClient, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def counts(sqs: SQSClient, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def drain(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    """Every message of a queue (received and deleted): body plus system attributes."""
    found: list[dict[str, Any]] = []
    for _ in range(100):
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=300,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            found.append(dict(message))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def peek(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    """Every message of a queue (bounded), read and made visible again: nothing deleted."""
    found: list[dict[str, Any]] = []
    for _ in range(100):
        messages = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=300, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        if not messages:
            break
        found += [dict(message) for message in messages]
    for message in found:
        sqs.change_message_visibility(
            QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    return found


def bodies(sqs: SQSClient, url: str) -> list[str]:
    return sorted(message["Body"] for message in drain(sqs, url))


def update(thread_id: str, **metadata: str) -> str:
    return json.dumps({"thread_id": thread_id, "metadata": metadata or {"k": "v"}})


def eventbridge_event(thread_id: str, **metadata: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO_ROOT / "events" / "eventbridge.json").read_text())
    event["id"] = str(uuid.uuid4())
    event["detail"] = {"thread_id": thread_id, "metadata": metadata or {"k": "v"}}
    return event


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="milliseconds")


@dataclass
class Dlq:
    """Puts each shape of dead letter into this test's DLQ the way production does."""

    aws: AwsResources
    url: str = ""  # another DLQ than the test's (a FIFO one)

    def __post_init__(self) -> None:
        self.sender = DeadLetterQueue(self.url or self.aws.dlq_url)  # the function's own sender

    def envelope(
        self,
        thread_id: str | None,
        *,
        category: Category = Category.REJECTED,
        status: int | None = 404,
        error: str = "HTTP 404: No thread found.",
        source: Source = "sqs",
        payload: str | None = None,
        failed_at: str = "",
    ) -> None:
        if payload is None:
            payload = (
                json.dumps(eventbridge_event(thread_id or "x"))
                if source == "eventbridge"
                else update(thread_id or "x")
            )
        letter = DeadLetter(
            category=category,
            error=error,
            status=status,
            thread_id=thread_id,
            source=source,
            message_id=str(uuid.uuid4()),
            payload=payload,
            attempts=1,
            failed_at=failed_at,
        )
        self.sender.send(letter, deadline=Deadline.after(60))

    def versioned(self, thread_id: str, *, version: int | None, version_source: str, **fields: Any) -> None:
        """An envelope carrying the update's effective version, as the function writes it."""
        letter = DeadLetter(
            category=fields.pop("category", Category.REJECTED),
            error=fields.pop("error", "HTTP 404: No thread found."),
            status=fields.pop("status", 404),
            thread_id=thread_id,
            source=fields.pop("source", "sqs"),
            message_id=str(uuid.uuid4()),
            payload=fields.pop("payload", update(thread_id)),
            attempts=1,
            version=version,
            version_source=version_source,
        )
        self.sender.send(letter, deadline=Deadline.after(60))

    def redriven(self, body: str) -> None:
        """A raw body moved by the source queue's redrive policy (maxReceiveCount 1)."""
        sqs = self.aws.sqs
        policy = {"deadLetterTargetArn": queue_arn(sqs, self.aws.dlq_url), "maxReceiveCount": "1"}
        sqs.set_queue_attributes(
            QueueUrl=self.aws.queue_url, Attributes={"RedrivePolicy": json.dumps(policy)}
        )
        sqs.send_message(
            QueueUrl=self.aws.queue_url,
            MessageBody=body,
            MessageAttributes={"producer": {"DataType": "String", "StringValue": "orders"}},
        )
        for _ in range(3):  # the first receive counts 1, the next moves it to the DLQ
            sqs.receive_message(QueueUrl=self.aws.queue_url, VisibilityTimeout=0)
        assert counts(sqs, self.aws.queue_url) == (0, 0)

    def destination(self, thread_id: str, error: str = "update not applied: HTTP 503") -> dict[str, Any]:
        """A Lambda on-failure destination record for a failed asynchronous EventBridge invoke."""
        request = eventbridge_event(thread_id)
        record = {
            "version": "1.0",
            "timestamp": ago(minutes=5).replace("+00:00", "Z"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:modify-thread:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": request,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": error, "errorType": "UpdateNotApplied", "stackTrace": []},
        }
        self.aws.sqs.send_message(QueueUrl=self.aws.dlq_url, MessageBody=json.dumps(record))
        return request


def fifo_pair(aws: AwsResources) -> tuple[str, str]:
    """A FIFO source queue whose redrive policy (maxReceiveCount 1) moves letters to a FIFO DLQ."""
    suffix = uuid.uuid4().hex[:10]
    dlq_url = aws.sqs.create_queue(
        QueueName=f"dlq-{suffix}.fifo", Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "true"}
    )["QueueUrl"]
    policy = {"deadLetterTargetArn": queue_arn(aws.sqs, dlq_url), "maxReceiveCount": "1"}
    source_url = aws.sqs.create_queue(
        QueueName=f"updates-{suffix}.fifo",
        Attributes={
            "FifoQueue": "true",
            "ContentBasedDeduplication": "true",
            "RedrivePolicy": json.dumps(policy),
        },
    )["QueueUrl"]
    return source_url, dlq_url


@dataclass
class Bus:
    name: str
    capture_url: str


def make_bus(aws: AwsResources) -> Bus:
    """An event bus whose ModifyThread rule targets a capture queue."""
    suffix = uuid.uuid4().hex[:10]
    events = boto3.client("events")
    name = f"threads-{suffix}"
    events.create_event_bus(Name=name)
    capture_url = aws.sqs.create_queue(QueueName=f"capture-{suffix}")["QueueUrl"]
    events.put_rule(
        Name="modify-thread",
        EventBusName=name,
        EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": ["ModifyThread"]}),
    )
    events.put_targets(
        Rule="modify-thread",
        EventBusName=name,
        Targets=[{"Id": "capture", "Arn": queue_arn(aws.sqs, capture_url)}],
    )
    return Bus(name, capture_url)


def to_queue(aws: AwsResources) -> list[str]:
    """``replay`` from this test's DLQ to its source queue."""
    return ["replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url]


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main([*argv, *FAST])
    return code, capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out = run(capsys, *argv, "--json")
    document: dict[str, Any] = json.loads(out)
    return code, document
