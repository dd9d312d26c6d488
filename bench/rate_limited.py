"""Rate-limited scenario: the function against an upstream that allows N requests a second.

The Portkey stand-in (``devstack.portkey_standin``, in this process: at these rates its work is
negligible) answers in 50 ms and refuses, with ``429`` and ``Retry-After: 1``, whatever its token
bucket (N a second, bursts of N) does not allow. One SQS batch of distinct threads, 60 s left in the
invocation, 16 workers. Each contender meets the limit for the first time (our handler gets a fresh
container each run), at 20/s x 100 updates and 50/s x 300:

* ``fixed x16`` - the function before the shared limiter, reduced to its retry rules: 16 workers,
  each request honours its own ``Retry-After``, and ``MAX_ATTEMPTS`` (3) bounds the 429s too;
* ``ours, AIMD in flight`` - our handler with the gate, but AIMD on the requests in flight instead of
  pacing (``bench.aimd``: measured, not shipped);
* ``ours`` - our handler as shipped: the gate, and pacing at the rate just accepted.

Reported per contender and limit (median of the runs): updates applied within the invocation, handed
back, 429 answers, wall time against the ideal (updates / limit).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO
from unittest import mock

import urllib3

from bench.contenders import SECRET
from devstack.lambda_events import LocalContext, sqs_event
from devstack.portkey_standin import PortkeyStandIn

LIMITS = ((20.0, 100), (50.0, 300))  # (requests per second, updates)
LATENCY_S = 0.050
INVOCATION_S = 60.0
WORKERS = 16
MAX_ATTEMPTS = 3
FIXED = "fixed x16"
AIMD = "ours, AIMD in flight"
OURS = "ours"
CONTENDERS = (FIXED, AIMD, OURS)
# Targets: nothing handed back at 20/s, few 429s (share of the updates), close to the ideal.
TARGET_429_SHARE = {20.0: 0.10, 50.0: 0.05}
TARGET_WALL_RATIO = 1.2

Handler = Callable[[dict[str, Any], Any], Any]


@dataclass(frozen=True, kw_only=True)
class RateRun:
    """One contender, one limit, one run."""

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


def fixed_concurrency(base_url: str, bodies: Sequence[dict[str, Any]]) -> int:
    """The function before the shared limiter, reduced to its retry rules; returns updates applied."""
    headers = {
        "x-portkey-api-key": SECRET["api_key"],
        "Content-Type": "application/json",
        "OpenAI-Beta": "assistants=v2",
    }
    pool = urllib3.PoolManager(maxsize=WORKERS, block=True, retries=False, timeout=30.0)
    deadline = time.monotonic() + INVOCATION_S - 3.0

    def update(body: dict[str, Any]) -> bool:
        payload = json.dumps({"metadata": body["metadata"]}).encode()
        for attempt in range(1, MAX_ATTEMPTS + 1):
            url = f"{base_url}/threads/{body['thread_id']}"
            response = pool.request("POST", url, body=payload, headers=headers, redirect=False)
            if response.status == 200:
                return True
            asked = response.headers.get("Retry-After")
            wait = float(asked) if asked else random.uniform(0, 0.2 * 2 ** (attempt - 1))
            if attempt == MAX_ATTEMPTS or time.monotonic() + wait + 0.5 > deadline:
                return False
            time.sleep(wait)
        return False

    with ThreadPoolExecutor(max_workers=WORKERS) as executor:
        applied = sum(executor.map(update, bodies))
    pool.clear()
    return applied


def fresh_container(contender: str) -> None:
    """A new runtime (pool, workers, limiter): a container meeting the limit for the first time."""
    from bench.aimd import AimdLimiter
    from thread_updater import app

    app._build_runtime.cache_clear()
    if contender == AIMD:
        with mock.patch.object(app, "UpstreamLimiter", AimdLimiter):
            app.current_runtime()


def run_once(contender: str, standin: PortkeyStandIn, handler: Handler, limit: tuple[float, int]) -> RateRun:
    rate, count = limit
    tag = f"{contender[:4]}{int(rate)}x{count}r{random.randrange(10**6)}".replace(" ", "").replace(",", "")
    bodies = [{"thread_id": f"rl_{tag}_{index}", "metadata": {"seq": str(index)}} for index in range(count)]
    if contender != FIXED:
        fresh_container(contender)
    standin.reset()
    standin.rate_limit(rate)
    started = time.perf_counter()
    if contender == FIXED:
        applied = fixed_concurrency(standin.url, bodies)
    else:
        response = handler(sqs_event(bodies), LocalContext(timeout_s=INVOCATION_S))
        applied = count - len(response["batchItemFailures"])
    wall_s = time.perf_counter() - started
    statuses = [request.status for request in standin.recorded()]
    standin.rate_limit(None)
    return RateRun(
        contender=contender,
        limit_rps=rate,
        updates=count,
        applied=applied,
        handed_back=count - applied,
        refused=statuses.count(429),
        requests=len(statuses),
        wall_s=wall_s,
    )


def measure(handler: Handler, repeats: int, sink: TextIO, log: TextIO) -> list[RateRun]:
    """Every contender at every limit, ``repeats`` rounds (round-robin), our handler's output on ``sink``.

    The function's environment (secret, DLQ) must be set already; only its base URL is changed here.
    """
    from thread_updater import app

    runs: list[RateRun] = []
    log.write("rate-limited upstream (stand-in token bucket, 50 ms answers, 429 + Retry-After: 1):\n")
    with (
        PortkeyStandIn(latency=LATENCY_S) as standin,
        mock.patch.dict(os.environ, {"PORTKEY_BASE_URL": standin.url}),
        contextlib.redirect_stdout(sink),
    ):
        for _ in range(repeats):
            for limit in LIMITS:
                for contender in CONTENDERS:
                    run = run_once(contender, standin, handler, limit)
                    log.write(f"  {run_text(run)}\n")
                    log.flush()
                    runs.append(run)
    app._build_runtime.cache_clear()  # the other scenarios build theirs again
    return runs


def run_text(run: RateRun) -> str:
    return (
        f"{run.limit_rps:.0f}/s x {run.updates} {run.contender:<21} applied {run.applied:>3}, "
        f"handed back {run.handed_back:>3}, 429s {run.refused:>3}, "
        f"wall {run.wall_s:.2f} s (ideal {run.ideal_s:.1f} s)"
    )


@dataclass(frozen=True, kw_only=True)
class RateSummary:
    """The median run of one contender at one limit."""

    contender: str
    limit_rps: float
    updates: int
    runs: int
    applied: float
    handed_back: float
    refused: float
    wall_s: float

    @property
    def ideal_s(self) -> float:
        return self.updates / self.limit_rps


def summarize(runs: Sequence[RateRun]) -> list[RateSummary]:
    """Medians per (limit, contender), in table order."""
    summaries = []
    for rate, count in LIMITS:
        for contender in CONTENDERS:
            mine = [run for run in runs if run.contender == contender and run.limit_rps == rate]
            if mine:
                summaries.append(
                    RateSummary(
                        contender=contender,
                        limit_rps=rate,
                        updates=count,
                        runs=len(mine),
                        applied=statistics.median(run.applied for run in mine),
                        handed_back=statistics.median(run.handed_back for run in mine),
                        refused=statistics.median(run.refused for run in mine),
                        wall_s=statistics.median(run.wall_s for run in mine),
                    )
                )
    return summaries


def verdicts(summaries: Sequence[RateSummary]) -> list[tuple[str, bool, str]]:
    """(target, passed, measured) for the shipped handler."""
    results = []
    for summary in summaries:
        if summary.contender != OURS:
            continue
        where = f"{summary.limit_rps:.0f}/s x {summary.updates}"
        share = summary.refused / summary.updates
        limit = TARGET_429_SHARE[summary.limit_rps]
        results.append((f"{where}: 429s <= {limit:.0%} of updates", share <= limit, f"{share:.0%}"))
        ratio = summary.wall_s / summary.ideal_s
        results.append(
            (f"{where}: wall <= {TARGET_WALL_RATIO}x ideal", ratio <= TARGET_WALL_RATIO, f"{ratio:.2f}x")
        )
        if summary.limit_rps == LIMITS[0][0]:
            results.append((f"{where}: 0 handed back", summary.handed_back == 0, f"{summary.handed_back:g}"))
    return results


def markdown(runs: Sequence[RateRun]) -> list[str]:
    """The table for ``docs/performance.md`` and the targets (nothing when the scenario did not run)."""
    if not runs:
        return []
    summaries = summarize(runs)
    lines = [
        "",
        "| upstream limit | updates | contender | applied in the invocation | handed back | 429 answers "
        "| wall | ideal | wall / ideal |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        name = f"**{s.contender}**" if s.contender == OURS else s.contender
        lines.append(
            f"| {s.limit_rps:.0f}/s | {s.updates} | {name} | {s.applied:g} | {s.handed_back:g} "
            f"| {s.refused:g} ({s.refused / s.updates:.0%}) | {s.wall_s:.2f} s | {s.ideal_s:.1f} s "
            f"| {s.wall_s / s.ideal_s:.2f} |"
        )
    runs_each = summaries[0].runs if summaries else 0
    lines += [
        "",
        f"Median of {runs_each} run(s) each.",
        "",
        "| target | result | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {name} | {'PASS' if ok else 'MISS'} | {value} |" for name, ok, value in verdicts(summaries)]
    return lines


def as_json(runs: Sequence[RateRun]) -> list[dict[str, Any]]:
    return [asdict(run) for run in runs]


COLORS = {FIXED: "#999999", AIMD: "#ff7f0e", OURS: "#2ca02c"}


def chart(runs: Sequence[RateRun], path: Path) -> None:
    """``rate_limited.png``: 429 answers and wall time against the ideal, per limit and contender."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summaries = summarize(runs)
    figure, (refused_axis, wall_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    width = 0.8 / len(CONTENDERS)
    for offset, contender in enumerate(CONTENDERS):
        mine = [s for s in summaries if s.contender == contender]
        positions = [index + (offset - 1) * width for index in range(len(mine))]
        refused = [100 * s.refused / s.updates for s in mine]
        walls = [s.wall_s / s.ideal_s for s in mine]
        refused_axis.bar(positions, refused, width, label=contender, color=COLORS[contender])
        wall_axis.bar(positions, walls, width, label=contender, color=COLORS[contender])
    labels = [f"{rate:.0f}/s x {count}" for rate, count in LIMITS]
    for axis in (refused_axis, wall_axis):
        axis.set_xticks(range(len(labels)), labels)
    for index, (rate, _) in enumerate(LIMITS):
        target = 100 * TARGET_429_SHARE[rate]
        refused_axis.hlines(target, index - 0.4, index + 0.4, colors="black", linestyles="dashed")
    wall_axis.axhline(TARGET_WALL_RATIO, color="black", linestyle="dashed", label="target")
    refused_axis.set_ylabel("429 answers (% of updates)")
    refused_axis.set_title("wasted calls (dashed: target)")
    wall_axis.set_ylabel("wall time / ideal (updates / limit)")
    wall_axis.set_title("time to apply the batch")
    wall_axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
