"""Reading a queue completely without deleting, or saying why the read was not complete.

Every received message is held: invisible to other readers, so the next receive reaches the messages
behind it. Holds are extended (``keep_held``) before half the visibility timeout has passed, so a long
run does not see its own letters come back; if some do come back anyway (the run stalled), they are
recognised by message id and the read goes on. The read ends when a receive comes back empty; it is
*incomplete* when ``max_messages`` was reached with more in the queue, or when messages stay visible
that no receive returns (FIFO message groups blocked behind a held message), and the caller exits
non-zero saying so. ``release`` makes every held message visible again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

BATCH = 10  # SQS's most per receive / per batch call
# Pages that bring only letters already seen before the read counts as stalled (holds kept expiring).
_MAX_STALE_PAGES = 20
_GONE_CODES = frozenset({"MessageNotInflight", "ReceiptHandleIsInvalid", "InvalidParameterValue"})


@dataclass(frozen=True)
class Depth:
    visible: int
    in_flight: int

    @property
    def total(self) -> int:
        return self.visible + self.in_flight


class Scanner:
    """Holds what it reads of one queue; see the module docstring."""

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        *,
        visibility_timeout: int,
        wait_seconds: int,
        max_messages: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sqs = sqs
        self.queue_url = queue_url
        self.visibility_timeout = visibility_timeout
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        self.is_fifo = queue_url.endswith(".fifo")
        self._clock = clock
        self.handles: dict[str, str] = {}  # message id -> latest receipt handle, for every letter read
        self.held: set[str] = set()  # the ids we believe are invisible because of us
        self.incomplete: str | None = None
        self._extended_at = clock()

    def depth(self) -> Depth:
        answer = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )
        attributes = answer["Attributes"]
        return Depth(
            int(attributes.get("ApproximateNumberOfMessages", "0")),
            int(attributes.get("ApproximateNumberOfMessagesNotVisible", "0")),
        )

    def server_time(self) -> datetime:
        """The queue service's clock (its ``Date`` header): letters sent after it arrived during the run,
        whatever the skew of this machine's clock."""
        answer = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])
        header = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
        try:
            return parsedate_to_datetime(header) if header else datetime.now(UTC)
        except (TypeError, ValueError):
            return datetime.now(UTC)

    def read(self, stop: Callable[[], bool] = lambda: False) -> Iterator[MessageTypeDef]:
        """Every message not read before, until a receive comes back empty (see the module docstring)."""
        stale_pages = 0
        while not stop():
            if len(self.handles) >= self.max_messages:
                self._check_truncated()
                return
            self.keep_held()
            messages = self._receive(min(BATCH, self.max_messages - len(self.handles)))
            if not messages:
                self._check_blocked()
                return
            fresh = [message for message in messages if message.get("MessageId", "") not in self.handles]
            for message in messages:
                self.handles[message.get("MessageId", "")] = message.get("ReceiptHandle", "")
                self.held.add(message.get("MessageId", ""))
            stale_pages = 0 if fresh else stale_pages + 1
            if stale_pages > _MAX_STALE_PAGES:
                self.incomplete = (
                    "letters kept reappearing before the read ended: raise --visibility-timeout and rerun"
                )
                return
            yield from fresh

    def _receive(self, count: int) -> list[MessageTypeDef]:
        answer = self.sqs.receive_message(
            QueueUrl=self.queue_url,
            MaxNumberOfMessages=count,
            VisibilityTimeout=self.visibility_timeout,
            WaitTimeSeconds=self.wait_seconds,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        )
        return answer.get("Messages", [])

    def _check_truncated(self) -> None:
        visible = self.depth().visible
        if visible:
            self.incomplete = (
                f"stopped at --max-messages {self.max_messages}; about {visible} more are in the queue"
            )

    def _check_blocked(self) -> None:
        """An empty receive while messages are visible: on a FIFO queue they wait behind a held message of
        their message group (SQS hands out no message of a group while an earlier one is in flight)."""
        visible = self.depth().visible
        if not visible:
            return
        if self.is_fifo:
            self.incomplete = (
                f"{visible} letter(s) could not be read: they wait behind held letters of the same FIFO "
                "message group (replay or delete the letters in front of them, then rerun)"
            )
        else:
            self.incomplete = f"{visible} letter(s) became visible but were not returned by a receive; rerun"

    def keep_held(self) -> None:
        """Extends every hold once half the visibility timeout has passed since the last extension,
        counting the next receive's wait (``--visibility-timeout`` is more than twice that wait)."""
        if self._clock() - self._extended_at + self.wait_seconds < self.visibility_timeout / 2:
            return
        self._extended_at = self._clock()
        self._change_visibility(sorted(self.held), self.visibility_timeout)

    def _change_visibility(self, message_ids: list[str], seconds: int) -> int:
        """Returns how many could not be changed; those whose hold already ended are no longer held."""
        from botocore.exceptions import BotoCoreError, ClientError

        failed = 0
        for start in range(0, len(message_ids), BATCH):
            chunk = message_ids[start : start + BATCH]
            entries = [
                {"Id": str(index), "ReceiptHandle": self.handles[message_id], "VisibilityTimeout": seconds}
                for index, message_id in enumerate(chunk)
            ]
            try:
                answer = self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)  # type: ignore[arg-type]
            except (BotoCoreError, ClientError):
                failed += len(chunk)
                continue
            for failure in answer.get("Failed", []):
                message_id = chunk[int(failure["Id"])]
                if failure.get("Code") in _GONE_CODES:
                    self.held.discard(message_id)  # visible again (or gone): nothing left to hold
                else:
                    failed += 1
        return failed

    def delete(self, message_id: str) -> None:
        """Deletes one letter read by this scan (raises the AWS error when that fails)."""
        self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=self.handles[message_id])
        self.held.discard(message_id)

    def release(self) -> int:
        """Makes every held message visible again; returns how many could not be released (those
        become visible anyway when their visibility timeout ends)."""
        held, self.held = sorted(self.held), set()
        return self._change_visibility(held, 0)
