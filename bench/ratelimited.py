"""Rate-limited scenario: the function against an upstream that allows N requests a second.

The Portkey stand-in (in this process) answers in 50 ms and refuses, with ``429`` and
``Retry-After: 1``, whatever its token bucket (N a second, bursts of N) does not allow. One SQS
batch of distinct threads, 60 s left in the invocation. Each contender meets the limit for the
first time (a fresh container for our handler), once per limit:

* ``fixed x16`` - the function before the shared limiter: 16 workers, every request honours its
  own ``Retry-After`` and ``MAX_ATTEMPTS`` (3) bounds the 429s too;
* ``ours (AIMD)`` - our handler with the gate, but AIMD on the in-flight limit instead of pacing
  (the alternative that was measured and not chosen; see ``AimdLimiter``);
* ``ours`` - our handler as shipped: the gate and pacing at the observed success rate.

Reported per run: updates applied within the invocation, handed back, 429 answers, wall time and
the ideal (updates / limit).
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TextIO
from unittest import mock

import urllib3

from devstack.lambda_events import LocalContext, sqs_event
from devstack.portkey_standin import PortkeyStandIn
from thread_updater import app
from thread_updater.ratelimit import UpstreamLimiter

LIMITS = ((20.0, 100), (50.0, 300))  # (requests per second, updates)
LATENCY_S = 0.050
INVOCATION_S = 60.0
WORKERS = 16
MAX_ATTEMPTS = 3
FIXED = "fixed x16"
AIMD = "ours (AIMD in-flight)"
OURS = "ours (pacing)"
CONTENDERS = (FIXED, AIMD, OURS)

# Targets: nothing handed back at 20/s, few 429s, close to the ideal.
TARGET_429_SHARE = {20.0: 0.10, 50.0: 0.05}
TARGET_WALL_RATIO = 1.2


@dataclass(frozen=True, kw_only=True)
class RateRun:
    contender: str
    limit_rps: float
    updates: int
    applied: int
    handed_back: int
    refused: int  # 429 answers
    requests: int
    wall_s: float

    @property
    def ideal_s(self) -> float:
        return self.updates / self.limit_rps

    @property
    def refused_share(self) -> float:
        return self.refused / self.updates


class AimdLimiter(UpstreamLimiter):
    """The gate as shipped, but additive-increase/multiplicative-decrease on the number of requests in
    flight (1 to ``max_concurrency``) instead of pacing the rate: halved at each rate-limited episode,
    one more slot per limit's worth of successes."""

    def __init__(self, *, max_concurrency: int = 1, max_rps: float | None = None) -> None:
        super().__init__(max_concurrency=max_concurrency, max_rps=max_rps)
        self._limit = float(max_concurrency)
        self._in_flight = 0
        self._slots = threading.Condition()

    def acquire(self, latest_start: float) -> bool:
        with self._slots:
            while self._in_flight >= int(self._limit):
                remaining = latest_start - time.monotonic()
                if remaining <= 0:
                    return False
                self._slots.wait(remaining)
            self._in_flight += 1
        if super().acquire(latest_start):
            return True
        self._free_slot()
        return False

    def settle(self, sent_at: float, *, status: int | None, retry_after_s: float | None) -> None:
        super().settle(sent_at, status=status, retry_after_s=retry_after_s)
        self._free_slot()

    def _free_slot(self) -> None:
        with self._slots:
            self._in_flight -= 1
            self._slots.notify()

    def _slow_down(self, now: float) -> None:
        self._limit = max(1.0, self._limit / 2)
        self._decreased_at = now

    def _probe(self) -> None:
        self._limit = min(float(self._max_concurrency), self._limit + 1 / self._limit)


def fixed_concurrency(base_url: str, headers: dict[str, str], bodies: Sequence[dict[str, Any]]) -> int:
    """The function before the shared limiter, reduced to its retry rules; returns updates applied."""
    pool = urllib3.PoolManager(maxsize=WORKERS, block=True, retries=False, timeout=30.0)
    deadline = time.monotonic() + INVOCATION_S - 3.0

    def update(body: dict[str, Any]) -> bool:
        url = f"{base_url}/threads/{body['thread_id']}"
        payload = json.dumps({"metadata": body["metadata"]}).encode()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            response = pool.request("POST", url, body=payload, headers=headers, redirect=False)
            if response.status == 200:
                return True
            retry_after = response.headers.get("Retry-After")
            wait = float(retry_after) if retry_after else random.uniform(0, 0.2 * 2 ** (attempt - 1))
            if attempt == MAX_ATTEMPTS or time.monotonic() + wait + 0.5 > deadline:
                return False
            time.sleep(wait)
        return False

    with ThreadPoolExecutor(max_workers=WORKERS) as executor:
        applied = sum(executor.map(update, bodies))
    pool.clear()
    return applied


def fresh_container(limiter_type: type[UpstreamLimiter]) -> None:
    """A new runtime (pool, executor, limiter), as a container meeting the limit for the first time."""
    app._build_runtime.cache_clear()
    with mock.patch.object(app, "UpstreamLimiter", limiter_type):
        app.current_runtime()


def run_once(
    contender: str,
    standin: PortkeyStandIn,
    handler: Callable[[dict[str, Any], Any], Any],
    headers: dict[str, str],
    limit: tuple[float, int],
    sink: TextIO,
) -> RateRun:
    rate, count = limit
    tag = f"{contender.split()[0][:4]}{int(rate)}x{count}-{random.randrange(10**6)}"
    bodies = [{"thread_id": f"rl_{tag}_{index}", "metadata": {"seq": str(index)}} for index in range(count)]
    if contender != FIXED:
        fresh_container(AimdLimiter if contender == AIMD else UpstreamLimiter)
    standin.reset()
    standin.rate_limit(rate)
    started = time.perf_counter()
    if contender == FIXED:
        applied = fixed_concurrency(standin.url, headers, bodies)
        handed_back = count - applied
    else:
        with contextlib.redirect_stdout(sink):
            response = handler(sqs_event(bodies), LocalContext(timeout_s=INVOCATION_S))
        handed_back = len(response["batchItemFailures"])
        applied = count - handed_back
    wall_s = time.perf_counter() - started
    statuses = [request.status for request in standin.recorded()]
    standin.rate_limit(None)
    return RateRun(
        contender=contender,
        limit_rps=rate,
        updates=count,
        applied=applied,
        handed_back=handed_back,
        refused=statuses.count(429),
        requests=len(statuses),
        wall_s=wall_s,
    )


@contextlib.contextmanager
def rate_limited_standin() -> Iterator[PortkeyStandIn]:
    with PortkeyStandIn(latency=LATENCY_S) as standin:
        yield standin


def measure(
    handler: Callable[[dict[str, Any], Any], Any],
    headers: dict[str, str],
    base_env: dict[str, str],
    sink: TextIO,
    log: TextIO,
) -> list[RateRun]:
    """Every contender at every limit, round-robin; the function's environment pointed at the stand-in."""
    runs: list[RateRun] = []
    with (
        rate_limited_standin() as standin,
        mock.patch.dict("os.environ", base_env | {"PORTKEY_BASE_URL": standin.url}),
    ):
        for limit in LIMITS:
            for contender in CONTENDERS:
                run = run_once(contender, standin, handler, headers, limit, sink)
                log.write(
                    f"  {run.limit_rps:>3.0f}/s x {run.updates}: {run.contender:<22} "
                    f"applied {run.applied:>3}, "
                    f"handed back {run.handed_back:>3}, 429s {run.refused:>3} ({run.refused_share:.0%}), "
                    f"wall {run.wall_s:.2f} s (ideal {run.ideal_s:.1f} s)\n"
                )
                log.flush()
                runs.append(run)
    app._build_runtime.cache_clear()
    return runs
