"""A requests-per-second limit for the stand-in, as a gateway's rate-limit policy applies one."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class TokenBucket:
    """``per_second`` requests a second with bursts of ``burst``; beyond it, 429 with ``Retry-After``.

    A refused request is answered at once and costs no token, as a gateway refuses before calling
    the upstream.
    """

    per_second: float
    burst: float
    retry_after: str
    tokens: float
    updated_at: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.updated_at) * self.per_second)
        self.updated_at = now
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True
