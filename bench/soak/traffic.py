"""The soak's traffic: the planned updates, the producer that sends them, and reading a queue back."""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import boto3

from bench.soak.config import SoakConfig

if TYPE_CHECKING:
    from multiprocessing.synchronize import Lock as MpLock
    from multiprocessing.synchronize import Semaphore as MpSemaphore


@dataclass(frozen=True)
class Planned:
    """One message to send: its thread, its body (unique in a run) and, for producers that cannot
    change the body, the update's version as the SQS message attribute ``version``."""

    thread_id: str
    body: str
    version_attribute: int | None = None


def planned_bodies(config: SoakConfig) -> list[Planned]:
    """One message per update; seeded spread of several updates per thread, unique bodies."""
    if config.ordering:
        return ordering_plan(config)
    rng = random.Random(config.seed)
    threads = config.thread_ids()
    run = uuid.uuid4().hex[:8]
    plan = []
    for seq in range(config.updates):
        thread_id = threads[seq % len(threads)] if seq < len(threads) else rng.choice(threads)
        body = {"thread_id": thread_id, "metadata": {"seq": str(seq), "run": run}}
        plan.append(Planned(thread_id, _compact(body)))
    return plan


def ordering_plan(config: SoakConfig) -> list[Planned]:
    """Versions 1..n per thread in the body, each update setting metadata, tool_resources or both;
    a ``duplicate_share`` of them sent twice (the copy carries its version as the message attribute,
    so every body stays unique), everything shuffled so threads' updates arrive in any order."""
    rng = random.Random(config.seed)
    run = uuid.uuid4().hex[:8]
    plan: list[Planned] = []
    for thread_id in config.thread_ids():
        for version in range(1, config.updates_per_thread + 1):
            seq = len(plan)
            fields = rng.choice([("metadata",), ("tool_resources",), ("metadata", "tool_resources")])
            update: dict[str, Any] = {"thread_id": thread_id}
            if "metadata" in fields:
                # seq and run in every map; a, b, c in some: each key's newest version must win
                owned = {key: f"{key}{version}" for key in ("a", "b", "c") if rng.random() < 0.5}
                update["metadata"] = {"seq": str(seq), "run": run, "v": str(version), **owned}
            if "tool_resources" in fields:
                update["tool_resources"] = {"code_interpreter": {"file_ids": [f"file-{run}-{seq}"]}}
            plan.append(Planned(thread_id, _compact({**update, "version": version})))
            if rng.random() < config.duplicate_share:
                plan.append(Planned(thread_id, _compact(update), version_attribute=version))
    rng.shuffle(plan)
    return plan


def _compact(document: dict[str, Any]) -> str:
    return json.dumps(document, separators=(",", ":"))


class Producer:
    """Sends the planned updates with SendMessageBatch, keeping the queue about ``queue_depth`` deep."""

    def __init__(self, config: SoakConfig, queue_url: str, room: MpSemaphore, queue_lock: MpLock) -> None:
        self.config = config
        self.queue_url = queue_url
        self.room = room
        self.queue_lock = queue_lock  # moto's queue takes one caller at a time (see the worker's poller)
        self.sqs = boto3.client("sqs")
        self.sent: dict[str, str] = {}
        self.version_attributes: dict[str, int] = {}  # message id -> its ``version`` attribute
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

    def run(self, plan: Sequence[Planned], ends: float) -> None:
        for start in range(0, len(plan), 10):
            chunk = plan[start : start + 10]
            self._make_room(len(chunk), ends)
            entries: list[Any] = []
            for position, planned in enumerate(chunk):
                entry: dict[str, Any] = {"Id": str(position), "MessageBody": planned.body}
                if self.config.fifo:  # as producers must: the group is the thread, one dedup id per update
                    entry["MessageGroupId"] = planned.thread_id
                    entry["MessageDeduplicationId"] = uuid.uuid4().hex
                if planned.version_attribute is not None:
                    entry["MessageAttributes"] = {
                        "version": {"DataType": "Number", "StringValue": str(planned.version_attribute)}
                    }
                entries.append(entry)
            with self.queue_lock:
                answer = self.sqs.send_message_batch(QueueUrl=self.queue_url, Entries=entries)
            if answer.get("Failed"):
                raise RuntimeError(f"SendMessageBatch failed: {answer['Failed']}")
            for done in sorted(answer["Successful"], key=lambda item: int(item["Id"])):
                planned = chunk[int(done["Id"])]
                self.sent[done["MessageId"]] = planned.body
                if planned.version_attribute is not None:
                    self.version_attributes[done["MessageId"]] = planned.version_attribute
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
