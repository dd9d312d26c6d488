"""Two corrections that make moto's SQS (5.x) keep the promises real SQS keeps under concurrent callers.

moto serves every request on its own thread. Two of its SQS paths are wrong once several consumers
(the soak's containers, the function's own visibility changes) use one queue at the same time:

1. ``Queue.delete_message`` rebuilds the queue's message list without the lock ``add_message`` takes,
   so a delete running beside another delete (or a send) can put back what the other just removed: the
   message returns once its visibility timeout ends, and is processed a second time.
2. FIFO: a message handed back with a visibility timeout stays in moto's "in flight" set until a receive
   scans it. When several messages of one group turn visible together, the scan reaches the first, finds
   its group still "in flight" (the later ones have not been scanned yet), skips it, and then delivers a
   later one: the group's order is broken. Real SQS counts a message whose visibility timeout has ended
   as not in flight ("only when each message is deleted or becomes visible again will the next message
   in that group be available", SQS Developer Guide, visibility timeout).

Neither is configurable in moto, so both are corrected here, once per process, by wrapping the two
methods; nothing of this project's own code is touched.
"""

from __future__ import annotations

import functools
from typing import Any

from moto.sqs.models import Queue, SQSBackend

__all__ = ["behave_like_sqs"]

_INSTALLED = "_behaves_like_sqs"


def behave_like_sqs() -> None:
    """Install both corrections (idempotent)."""
    if getattr(Queue, _INSTALLED, False):
        return
    original_delete = Queue.delete_message
    original_receive = SQSBackend.receive_message

    @functools.wraps(original_delete)
    def delete_message(self: Queue, receipt_handle: str) -> None:
        with self._messages_lock:
            original_delete(self, receipt_handle)

    @functools.wraps(original_receive)
    def receive_message(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        queue = self.get_queue(queue_name)
        if queue.fifo_queue:
            with queue._messages_lock:
                for message in [m for m in queue.pending_messages if m.visible]:
                    queue.pending_messages.discard(message)
        return original_receive(self, queue_name, *args, **kwargs)

    Queue.delete_message = delete_message  # type: ignore[method-assign]
    SQSBackend.receive_message = receive_message  # type: ignore[method-assign]
    setattr(Queue, _INSTALLED, True)
