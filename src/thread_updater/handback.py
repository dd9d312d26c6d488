"""Hand records back with their own retry delay, instead of the queue's whole visibility timeout.

A record in ``batchItemFailures`` becomes visible again when its visibility timeout ends (660 s on
this stack's queue). That is right for a configuration error (nothing fixes itself in seconds) but
far too slow after a ``Retry-After: 1`` or for an update that only waits for its thread's lease.
So before answering, the function changes each handed-back record's visibility to its
``Outcome.retry_delay_s`` (chosen by delays.py, whose table says which delay applies when).

Best effort: when the call fails or the invocation is out of time, the record simply comes back
after the queue's visibility timeout, which is always safe (just slower).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from thread_updater.aws import WORST_CASE_CALL_S, LazyClient
from thread_updater.deadline import Deadline
from thread_updater.jobs import Job
from thread_updater.observability import logger
from thread_updater.outcomes import Outcome, Result

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import ChangeMessageVisibilityBatchRequestEntryTypeDef

__all__ = ["HandBack"]

_BATCH = 10  # ChangeMessageVisibilityBatch takes at most 10 entries


class HandBack:
    """Sets handed-back records' visibility to their ``Outcome.retry_delay_s``."""

    def __init__(self) -> None:
        self._sqs = LazyClient("sqs")

    def apply(self, jobs: Sequence[Job], outcomes: Sequence[Outcome], deadline: Deadline) -> None:
        """Change the visibility of every handed-back record that has a delay of its own."""
        delays = {o.message_id: o.retry_delay_s for o in outcomes if o.result is Result.RETRY}
        by_queue: dict[str, list[ChangeMessageVisibilityBatchRequestEntryTypeDef]] = {}
        for job in jobs:
            delay = delays.get(job.message_id)
            if delay is None or job.receipt is None:
                continue
            entry: ChangeMessageVisibilityBatchRequestEntryTypeDef = {
                "Id": str(len(by_queue.get(job.receipt.queue_arn, []))),
                "ReceiptHandle": job.receipt.receipt_handle,
                "VisibilityTimeout": max(0, min(43_200, round(delay))),
            }
            by_queue.setdefault(job.receipt.queue_arn, []).append(entry)
        for queue_arn, entries in by_queue.items():
            for start in range(0, len(entries), _BATCH):
                if not self._change(queue_arn, entries[start : start + _BATCH], deadline):
                    return

    def _change(
        self,
        queue_arn: str,
        entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef],
        deadline: Deadline,
    ) -> bool:
        from botocore.exceptions import BotoCoreError, ClientError

        if not deadline.allows(WORST_CASE_CALL_S):
            logger.warning("no time left to set retry delays; records return after the visibility timeout")
            return False
        client: SQSClient = self._sqs()
        try:
            answer = client.change_message_visibility_batch(
                QueueUrl=queue_url(client.meta.endpoint_url, queue_arn), Entries=entries
            )
        except (BotoCoreError, ClientError) as error:
            logger.warning("could not set retry delays", extra={"queue": queue_arn, "error": str(error)})
            return True
        if answer.get("Failed"):
            logger.warning(
                "some retry delays were not set",
                extra={"queue": queue_arn, "failed": [item.get("Code") for item in answer["Failed"]]},
            )
        return True


def queue_url(endpoint_url: str, queue_arn: str) -> str:
    """``arn:aws:sqs:<region>:<account>:<name>`` → the queue URL at this client's endpoint (no
    GetQueueUrl call: the ARN already names the account and the queue)."""
    *_, account, name = queue_arn.split(":")
    return f"{endpoint_url.rstrip('/')}/{account}/{name}"
