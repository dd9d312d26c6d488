"""A local stand-in for Lambda's SQS event source mapping.

It receives batches from the source queue, hands them to ``lambda_handler`` in the exact Lambda
SQS event shape, deletes what succeeded and leaves ``batchItemFailures`` to reappear after the
visibility timeout, so the queue's redrive policy moves them to the DLQ after ``maxReceiveCount``.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import boto3
from mypy_boto3_sqs import SQSClient
from mypy_boto3_sqs.type_defs import MessageTypeDef

from devstack.lambda_events import REGION, LocalContext

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass
class PollStats:
    invocations: int = 0
    received: int = 0
    deleted: int = 0
    handed_back: int = 0
    receives_by_message: dict[str, int] = field(default_factory=dict)
    handler_errors: list[str] = field(default_factory=list)


def lambda_record(message: MessageTypeDef, queue_arn: str) -> dict[str, Any]:
    """An SQS message as Lambda's event source mapping presents it to the function."""
    body = message["Body"]
    attributes = {str(name): value for name, value in message.get("Attributes", {}).items()}
    return {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": body,
        "attributes": attributes,
        "messageAttributes": {
            name: {
                "stringValue": value.get("StringValue"),
                "binaryValue": None,
                "stringListValues": [],
                "binaryListValues": [],
                "dataType": value["DataType"],
            }
            for name, value in message.get("MessageAttributes", {}).items()
        },
        "md5OfBody": message.get("MD5OfBody")
        or hashlib.md5(body.encode(), usedforsecurity=False).hexdigest(),
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": REGION,
    }


class SqsPoller:
    """Receives up to ``batch_size`` messages within ``window_s``, invokes, settles, repeats."""

    def __init__(
        self,
        queue_url: str,
        handler: Handler,
        *,
        batch_size: int = 10,
        window_s: float = 0.5,
        function_timeout_s: float = 30.0,
    ) -> None:
        self.queue_url = queue_url
        self.handler = handler
        self.batch_size = batch_size
        self.window_s = window_s
        self.function_timeout_s = function_timeout_s
        self.stats = PollStats()
        self._sqs: SQSClient = boto3.client("sqs")
        self._queue_arn = self._sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]

    def _receive_batch(self) -> list[MessageTypeDef]:
        """Like the event source mapping: fill the batch until it is full or the window closes."""
        messages: list[MessageTypeDef] = []
        window_ends = time.monotonic() + self.window_s
        while len(messages) < self.batch_size:
            wait = max(0, min(1, round(window_ends - time.monotonic())))
            answer = self._sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                WaitTimeSeconds=wait,
                AttributeNames=["All"],
                MessageAttributeNames=["All"],
            )
            received = answer.get("Messages", [])
            messages.extend(received)
            if time.monotonic() >= window_ends or (not received and messages):
                break
        return messages

    def _settle(self, messages: list[MessageTypeDef], response: Any) -> None:
        failed: set[str] = set()
        if isinstance(response, Mapping):
            failed = {item["itemIdentifier"] for item in response.get("batchItemFailures", [])}
        done = [message for message in messages if message["MessageId"] not in failed]
        for start in range(0, len(done), 10):
            chunk = done[start : start + 10]
            self._sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(index), "ReceiptHandle": m["ReceiptHandle"]} for index, m in enumerate(chunk)
                ],
            )
        self.stats.deleted += len(done)
        self.stats.handed_back += len(messages) - len(done)

    def poll_once(self) -> int:
        """One receive → invoke → settle round; returns how many messages it handled."""
        messages = self._receive_batch()
        if not messages:
            return 0
        self.stats.invocations += 1
        self.stats.received += len(messages)
        for message in messages:
            count = self.stats.receives_by_message.get(message["MessageId"], 0)
            self.stats.receives_by_message[message["MessageId"]] = count + 1
        event = {"Records": [lambda_record(message, self._queue_arn) for message in messages]}
        try:
            response = self.handler(event, LocalContext(timeout_s=self.function_timeout_s))
        except Exception as error:  # a failed invocation: Lambda retries the whole batch
            self.stats.handler_errors.append(f"{type(error).__name__}: {error}")
            self.stats.handed_back += len(messages)
            return len(messages)
        self._settle(messages, response)
        return len(messages)

    def in_queue(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def drain(self, *, max_invocations: int = 1000, max_seconds: float = 120.0) -> PollStats:
        """Poll until the queue is empty (visible and in flight) or a bound is reached."""
        deadline = time.monotonic() + max_seconds
        while self.stats.invocations < max_invocations and time.monotonic() < deadline:
            if self.poll_once() == 0 and self.in_queue() == 0:
                break
        return self.stats
