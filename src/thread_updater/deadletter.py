"""The dead-letter queue for permanent failures: one self-describing JSON message per update."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

from thread_updater.aws import WORST_CASE_CALL_S, LazyClient
from thread_updater.deadline import Deadline
from thread_updater.errors import ConfigurationError, DeadLetterError
from thread_updater.models import Target, TargetKind

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, SendMessageRequestTypeDef

Source = Literal["sqs", "eventbridge"]

# A DLQ_URL naming no queue is the deployment's fault, not this record's: the same for every letter
# until an operator fixes it. SQS says so as QueueDoesNotExist (JSON protocol) or its query-protocol
# name, which botocore keeps for compatibility.
_MISSING_QUEUE_CODES = frozenset({"QueueDoesNotExist", "AWS.SimpleQueueService.NonExistentQueue"})


class Category(StrEnum):
    VALIDATION = "validation"  # the message itself is invalid; no HTTP call was made
    REJECTED = "rejected"  # Portkey or the provider answered a permanent 4xx


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    """What operators read and what a replay needs: the reason and the original payload, unchanged."""

    category: Category
    error: str
    status: int | None
    thread_id: str | None  # a thread update's id (None for a conversation's, and for unreadable messages)
    source: Source
    message_id: str
    payload: str
    attempts: int
    version: int | None = None  # the update's effective version: a replay carries it along
    version_source: str | None = None
    conversation_id: str | None = None  # a conversation update's id
    failed_at: str = ""

    @classmethod
    def naming(cls, target: Target | None, **fields: Any) -> DeadLetter:
        """A letter whose id field is the target's: ``thread_id`` or ``conversation_id``."""
        thread_id = target.id if target is not None and target.kind is TargetKind.THREAD else None
        conversation_id = target.id if target is not None and target.kind is TargetKind.CONVERSATION else None
        return cls(thread_id=thread_id, conversation_id=conversation_id, **fields)

    @property
    def target_key(self) -> str | None:
        """What orders its letters: the thread id, or the conversation's state key."""
        if self.conversation_id is not None:
            return f"conversation:{self.conversation_id}"
        return self.thread_id

    def to_json(self) -> str:
        document = asdict(self)
        if self.conversation_id is None:  # thread letters keep the shape they always had
            del document["conversation_id"]
        document["failed_at"] = self.failed_at or datetime.now(UTC).isoformat(timespec="milliseconds")
        # ASCII-escaped: any str survives (even a lone surrogate from a JSON escape) and decodes unchanged
        return json.dumps(document, ensure_ascii=True)


def _fifo_group(letter: DeadLetter, letter_id: str) -> str:
    """A thread's rejected letters share its group, so they are read (and replayed) in order. An invalid
    message has nothing to keep in order with: a group of its own, so that a letter held by a reader
    never hides the other invalid ones behind it (SQS hands out nothing of a group while one is held)."""
    key = letter.target_key
    if letter.category is Category.VALIDATION or not key:
        return f"letter-{letter_id[:64]}"
    return key


class DeadLetterQueue:
    """Sends dead letters to SQS; the client is created on first use (most invocations never need it)."""

    def __init__(self, queue_url: str) -> None:
        self.queue_url = queue_url
        self._is_fifo = queue_url.endswith(".fifo")
        self._sqs = LazyClient("sqs")

    def send(self, letter: DeadLetter, deadline: Deadline) -> None:
        """Raises DeadLetterError when SQS does not take the message, or when a send might not finish
        before ``deadline``; the record is then handed back. A queue
        that does not exist is a ConfigurationError instead: loud (one ERROR, the ConfigurationErrors
        metric) and the batch stops, as for any other broken configuration."""
        from botocore.exceptions import BotoCoreError, ClientError

        if not deadline.allows(WORST_CASE_CALL_S):
            raise DeadLetterError("not enough time left in this invocation to dead-letter safely")

        attributes: dict[str, MessageAttributeValueTypeDef] = {
            "category": {"DataType": "String", "StringValue": letter.category.value}
        }
        if letter.status is not None:
            attributes["status"] = {"DataType": "Number", "StringValue": str(letter.status)}
        request: SendMessageRequestTypeDef = {
            "QueueUrl": self.queue_url,
            "MessageBody": letter.to_json(),
            "MessageAttributes": attributes,
        }
        if self._is_fifo:  # a FIFO source queue needs a FIFO DLQ
            letter_id = hashlib.sha256(f"{letter.source}:{letter.message_id}".encode()).hexdigest()
            request["MessageGroupId"] = _fifo_group(letter, letter_id)
            request["MessageDeduplicationId"] = letter_id
        try:
            client: SQSClient = self._sqs()
            client.send_message(**request)
        except (BotoCoreError, ClientError) as error:
            code = error.response.get("Error", {}).get("Code") if isinstance(error, ClientError) else None
            if code in _MISSING_QUEUE_CODES:
                raise ConfigurationError(
                    f"the dead-letter queue DLQ_URL={self.queue_url} does not exist"
                ) from None
            raise DeadLetterError(f"dead-letter queue send failed: {error}") from None
