"""The soak's traffic: the planned updates, the producer that sends them, and reading a queue back."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import boto3

from bench.soak.config import SoakConfig

if TYPE_CHECKING:
    from multiprocessing.synchronize import Semaphore as MpSemaphore


def planned_bodies(config: SoakConfig) -> list[tuple[str, str]]:
    """(thread id, body) per update; seeded spread of several updates per thread, unique bodies."""
    rng = random.Random(config.seed)
    threads = config.thread_ids()
    run = uuid.uuid4().hex[:8]
    plan = []
    for seq in range(config.updates):
        thread_id = threads[seq % len(threads)] if seq < len(threads) else rng.choice(threads)
        body = {"thread_id": thread_id, "metadata": {"seq": str(seq), "run": run}}
        plan.append((thread_id, json.dumps(body, separators=(",", ":"))))
    return plan


class Producer:
    """Sends the planned updates with SendMessageBatch, keeping the queue about ``queue_depth`` deep."""

    def __init__(self, config: SoakConfig, queue_url: str, room: MpSemaphore) -> None:
        self.config = config
        self.queue_url = queue_url
        self.room = room
        self.sqs = boto3.client("sqs")
        self.sent: dict[str, str] = {}
        self.order: list[str] = []

    def _depth(self) -> int:
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attributes["ApproximateNumberOfMessages"]) + int(
            attributes["ApproximateNumberOfMessagesNotVisible"]
        )

    def _make_room(self, count: int, ends: float) -> None:
        for _ in range(count):
            while not self.room.acquire(timeout=1.0):
                # Redriven messages leave the queue without a delete (no permit comes back for them).
                if self._depth() <= self.config.queue_depth - count or time.monotonic() >= ends:
                    return

    def run(self, plan: Sequence[tuple[str, str]], ends: float) -> None:
        for start in range(0, len(plan), 10):
            chunk = plan[start : start + 10]
            self._make_room(len(chunk), ends)
            entries: list[Any] = []
            for position, (thread_id, body) in enumerate(chunk):
                entry: dict[str, str] = {"Id": str(position), "MessageBody": body}
                if self.config.fifo:  # as producers must: the group is the thread, one dedup id per update
                    entry["MessageGroupId"] = thread_id
                    entry["MessageDeduplicationId"] = uuid.uuid4().hex
                entries.append(entry)
            answer = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {answer['Failed']}")
            for done in sorted(answer["Successful"], key=lambda item: int(item["Id"])):
                self.sent[done["MessageId"]] = chunk[int(done["Id"])][1]
                self.order.append(done["MessageId"])


def read_queue(queue_url: str, limit: int) -> list[str]:
    """Every body in the queue (received and deleted, so FIFO groups do not hold the rest back)."""
    sqs = boto3.client("sqs")
    bodies: list[str] = []
    for _ in range(limit // 10 + 2):
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=600).get(
            "Messages", []
        )
        if not messages:
            break
        bodies += [message["Body"] for message in messages]
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(index), "ReceiptHandle": message["ReceiptHandle"]}
                for index, message in enumerate(messages)
            ],
        )
    return bodies
