"""The adaptive strategy that was measured and not chosen: AIMD on the number of requests in flight.

Kept here, not in the function, so ``bench.rate_limited`` can keep measuring it against the shipped
pacing (``thread_updater.ratelimit``). Imported only once the handler is loaded: importing the
function's modules creates its Logger, which keeps the stdout it first sees.
"""

from __future__ import annotations

import threading
import time

from thread_updater.ratelimit import UpstreamLimiter


class AimdLimiter(UpstreamLimiter):
    """The shipped gate, but additive-increase/multiplicative-decrease on the requests in flight
    (1 to ``max_concurrency``) instead of pacing the rate: halved once per rate-limited episode, one
    more slot per limit's worth of successes."""

    def __init__(self, *, max_concurrency: int = 1, max_rps: float | None = None) -> None:
        super().__init__(max_concurrency=max_concurrency, max_rps=max_rps)
        self._limit = float(max_concurrency)
        self._taken = 0
        self._slots = threading.Condition()

    def acquire(self, latest_start: float) -> bool:
        with self._slots:
            while self._taken >= int(self._limit):
                remaining = latest_start - time.monotonic()
                if remaining <= 0:
                    return False
                self._slots.wait(remaining)
            self._taken += 1
        if super().acquire(latest_start):
            return True
        self._free_slot()
        return False

    def settle(self, sent_at: float, *, status: int | None, retry_after_s: float | None) -> None:
        super().settle(sent_at, status=status, retry_after_s=retry_after_s)
        self._free_slot()

    def _free_slot(self) -> None:
        with self._slots:
            self._taken -= 1
            self._slots.notify()

    def _slow_down(self, now: float) -> None:
        self._limit = max(1.0, self._limit / 2)
        self._decreased_at = now

    def _probe(self) -> None:
        self._limit = min(float(self._max_concurrency), self._limit + 1 / self._limit)
