"""devstack.moto_sqs: moto's SQS keeps deletes and FIFO group order under concurrent callers, as SQS does."""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
from mypy_boto3_sqs import SQSClient


def _sqs() -> SQSClient:
    return boto3.client("sqs")


def _receive_all(sqs: SQSClient, queue_url: str, count: int, *, bound_s: float = 30.0) -> list[str]:
    """Receive until ``count`` messages came back (bounded); returns their bodies in delivery order."""
    bodies: list[str] = []
    ends = time.monotonic() + bound_s
    while len(bodies) < count and time.monotonic() < ends:
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        bodies.extend(message["Body"] for message in answer.get("Messages", []))
    return bodies


def test_a_fifo_group_handed_back_together_comes_back_in_order(moto_endpoint: str) -> None:
    # GIVEN a FIFO group of three messages, received together
    sqs = _sqs()
    queue_url = sqs.create_queue(
        QueueName=f"order-{uuid.uuid4().hex[:8]}.fifo",
        Attributes={"FifoQueue": "true", "VisibilityTimeout": "30"},
    )["QueueUrl"]
    for body in ("1", "2", "3"):
        sqs.send_message(
            QueueUrl=queue_url, MessageBody=body, MessageGroupId="g", MessageDeduplicationId=uuid.uuid4().hex
        )
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [message["Body"] for message in received] == ["1", "2", "3"]

    # WHEN all three are handed back with the same short delay (as the function does for a FIFO lane)
    sqs.change_message_visibility_batch(
        QueueUrl=queue_url,
        Entries=[
            {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"], "VisibilityTimeout": 1}
            for index, message in enumerate(received)
        ],
    )

    # THEN they come back in the group's order (moto alone delivers a later one first)
    assert _receive_all(sqs, queue_url, 3)[:1] == ["1"]


def test_concurrent_deletes_delete_every_message(moto_endpoint: str) -> None:
    # GIVEN 400 received messages on one queue
    sqs = _sqs()
    queue_url = sqs.create_queue(
        QueueName=f"deletes-{uuid.uuid4().hex[:8]}", Attributes={"VisibilityTimeout": "1"}
    )["QueueUrl"]
    for start in range(0, 400, 10):
        sqs.send_message_batch(
            QueueUrl=queue_url, Entries=[{"Id": str(i), "MessageBody": str(start + i)} for i in range(10)]
        )
    handles: list[str] = []
    for _ in range(100):  # bounded: 40 receives of 10 are enough
        if len(handles) >= 400:
            break
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60)
        handles.extend(message["ReceiptHandle"] for message in answer.get("Messages", []))
    assert len(handles) == 400

    # WHEN 8 consumers delete them at the same time, ten at a time
    def delete(chunk: list[str]) -> None:
        client = _sqs()
        for start in range(0, len(chunk), 10):
            client.delete_message_batch(
                QueueUrl=queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk[start : start + 10])],
            )

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(delete, [handles[index::8] for index in range(8)]))

    # THEN none of them is left in the queue (moto alone puts some back, to be delivered again)
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert (
        int(attributes["ApproximateNumberOfMessages"])
        + int(attributes["ApproximateNumberOfMessagesNotVisible"])
        == 0
    )
