"""The invocation's deadline: one value that answers "does this fit?", instead of a bare float.

Made once per invocation (``app.invocation_deadline``: the context's remaining time, less a margin to
dead-letter, log and answer) and passed whole to every part that spends time. Each asks it the same
question before it starts something whose worst case it knows (``allows``: a DynamoDB or SQS call,
a secret read, an HTTP attempt), and a part that must leave time for what follows hands on a
shorter one (``minus``: the Modify call leaves the worst case of the state-table write that records
its result). The socket-level bound that enforces it while a request runs is ``deadline_io``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Deadline"]


@dataclass(frozen=True, slots=True)
class Deadline:
    """A moment on ``time.monotonic()``'s clock by which something must be done."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        """The deadline ``seconds`` from now."""
        return cls(time.monotonic() + seconds)

    def remaining_s(self) -> float:
        """Seconds left (negative once it has passed)."""
        return self.at - time.monotonic()

    def allows(self, cost_s: float) -> bool:
        """Whether something that takes at most ``cost_s`` seconds can still finish in time."""
        return self.remaining_s() >= cost_s

    def minus(self, reserve_s: float) -> Deadline:
        """An earlier deadline, keeping ``reserve_s`` seconds for what must happen after."""
        return Deadline(self.at - reserve_s)

    def wall_ms(self) -> int:
        """The same moment in epoch milliseconds (for a lease another container reads)."""
        return int(time.time() * 1000 + self.remaining_s() * 1000)
