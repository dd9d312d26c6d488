"""Coalescing: a thread's updates in one batch as one Modify request, before and after, in one run.

One SQS batch of 100 records over 100, 20 or 10 threads (1, 5 or 10 updates per thread, versions
increasing, records interleaved), the state table on (moto's DynamoDB in its own process, counting
what DynamoDB would bill: ``bench.dynamodb_server``), the Portkey stand-in answering in 50 ms. Two
versions of the function, each a warm container in its own process (``bench.warm_child``):

* ``before`` - commit ``4b015b4`` (``bench.before``): one claim, one request, one record per update;
* ``after`` - this tree's ``src``: one claim, one request, one record per thread and batch.

The series (``SERIES``), round-robin over the versions so machine noise spreads evenly:

* unthrottled, small metadata (2 keys): every figure, median of the runs;
* unthrottled, full metadata (16 keys x 512 characters) at 1 and 10 updates per thread, on new
  threads and on threads seen before (the same threads' previous batch applied first, untimed):
  what the state table's items, and so its write units, weigh when the metadata is as large as
  allowed; one run each (units, not time);
* a 20 requests/s upstream (the stand-in's token bucket, bursts of 20, ``429`` + ``Retry-After: 1``
  beyond), each run in a fresh runtime (warmed up unthrottled first: clients and pool ready, the
  limiter new to the limit), 60 s left in the invocation;
* unthrottled, small metadata, without the state table: the request path alone, which the
  "within 5 % of before" target (1 update per thread) is judged on (moto serves one call at a time, so
  with the table the wall is mostly moto's: ``moto_busy_s``).

Reported per update: Portkey requests (429 answers included), DynamoDB calls, DynamoDB write units;
per batch: wall time, updates handed back. Every unthrottled run must apply every update, and each
thread must end with its newest metadata (checked on the stand-in).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO
from unittest import mock

from bench import before
from bench.contenders import SECRET
from bench.dynamodb_server import DynamoDBProcess
from bench.scenarios import CONCURRENCY
from bench.warm_child import WarmChild
from devstack.lambda_events import sqs_event
from devstack.local_aws import create_resources, create_state_table, function_environment, moto_server
from devstack.portkey_standin import PortkeyStandIn

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
BATCH = 100
PER_THREAD = (1, 5, 10)
FULL_PER_THREAD = (1, 10)
LATENCY_S = 0.050
RATE_RPS = 20.0
INVOCATION_S = 60.0
BEFORE, AFTER = "before", "after"
UNTHROTTLED, LIMITED = "unthrottled", f"{RATE_RPS:.0f}/s"
SMALL, FULL = "small", "full"
FULL_KEYS, FULL_VALUE_CHARS = 16, 512
# Targets from issue 20.
TARGET_WALL_LIMITED_S = 1.0
TARGET_UNTHROTTLED_RATIO = 1.05


@dataclass(frozen=True)
class Series:
    upstream: str
    metadata: str
    per_thread: tuple[int, ...]
    state_table: bool = True
    seen: bool = False  # the threads already have state: the batch follows one to the same threads

    @property
    def label(self) -> str:
        return f"{self.metadata}, threads seen" if self.seen else self.metadata


SERIES = (
    Series(UNTHROTTLED, SMALL, PER_THREAD),
    Series(UNTHROTTLED, FULL, FULL_PER_THREAD),
    Series(UNTHROTTLED, FULL, FULL_PER_THREAD, seen=True),
    Series(LIMITED, SMALL, PER_THREAD),
    # The request path alone: moto serves one call at a time, so with the table the wall is mostly
    # moto's (``moto_busy_s``); the "within 5 % of before" target is judged on this one.
    Series(UNTHROTTLED, SMALL, PER_THREAD, state_table=False),
)


@dataclass(frozen=True, kw_only=True)
class CoalescingRun:
    """One version of the function, one batch."""

    version: str
    upstream: str
    metadata: str
    per_thread: int
    state_table: bool
    updates: int
    requests: int  # Portkey requests, 429 answers included
    refused: int
    handed_back: int
    dynamodb_calls: int
    write_units: int
    read_units: float
    max_item_bytes: int
    moto_busy_s: float  # moto's own time serving the batch's DynamoDB calls (one at a time)
    wall_s: float

    @property
    def threads(self) -> int:
        return self.updates // self.per_thread


@dataclass
class CoalescingReport:
    runs: list[CoalescingRun] = field(default_factory=list)
    skipped_before: str = ""  # why "before" did not run ("" when it did)

    def as_json(self) -> dict[str, Any]:
        return {"skipped_before": self.skipped_before, "runs": [asdict(run) for run in self.runs]}


def metadata(shape: str, index: int) -> dict[str, str]:
    if shape == SMALL:
        return {"seq": str(index), "source": "bench"}
    return {f"key_{key:02d}": f"{index}:{key}:".ljust(FULL_VALUE_CHARS, "x") for key in range(FULL_KEYS)}


def bodies(tag: str, per_thread: int, shape: str, first_version: int = 1) -> list[dict[str, Any]]:
    """``BATCH`` updates, ``per_thread`` to a thread, interleaved, versions increasing."""
    threads = BATCH // per_thread
    return [
        {
            "thread_id": f"co_{tag}_{index % threads}",
            "version": first_version + index,
            "metadata": metadata(shape, first_version + index),
        }
        for index in range(BATCH)
    ]


@dataclass
class Stack:
    standin: PortkeyStandIn
    dynamodb: DynamoDBProcess
    children: dict[str, WarmChild]
    with_table: dict[str, bool] = field(default_factory=dict)  # each child's last configuration


@contextlib.contextmanager
def stack(before_src: Path | None, log: TextIO) -> Iterator[Stack]:
    """moto (secret, DLQ), the counting DynamoDB with the state table, the stand-in, one warm child
    per version; the function's environment set meanwhile (the children inherit it)."""
    with contextlib.ExitStack() as stack_:
        endpoint = stack_.enter_context(moto_server())
        dynamodb = stack_.enter_context(DynamoDBProcess())
        standin = stack_.enter_context(PortkeyStandIn(latency=LATENCY_S))
        resources = create_resources(endpoint, SECRET, state_table=False)
        environment = {"AWS_ENDPOINT_URL_DYNAMODB": dynamodb.url}
        stack_.enter_context(mock.patch.dict(os.environ, environment))
        table = create_state_table(f"bench-coalescing-{os.getpid()}")
        environment = function_environment(
            resources, standin.url, MAX_CONCURRENCY=str(CONCURRENCY), THREAD_STATE_TABLE=table
        )
        stack_.enter_context(mock.patch.dict(os.environ, environment))
        sources = {AFTER: ROOT / "src", **({BEFORE: before_src} if before_src else {})}
        children = {version: stack_.enter_context(WarmChild(src)) for version, src in sources.items()}
        log.write(f"  stand-in {standin.url}, DynamoDB (moto, counting) {dynamodb.url}, moto {endpoint}\n")
        yield Stack(standin, dynamodb, children)


def warm_up(stack_: Stack, version: str, *, state_table: bool, fresh: bool = False) -> None:
    """An untimed invocation of 16 updates: pools, clients, the secret ready in this configuration
    (``fresh``: in a new runtime, whose limiter has not met the upstream's limit yet)."""
    warm = OUT / f"coalescing-{version}.json"
    tag = f"warm{version}{os.urandom(4).hex()}"
    warm.write_text(json.dumps(sqs_event(bodies(tag, 1, SMALL)[:CONCURRENCY])))
    stack_.standin.rate_limit(None)
    stack_.children[version].invoke(warm, state_table=state_table, fresh=fresh)
    stack_.with_table[version] = state_table


def run_once(stack_: Stack, version: str, series: Series, per_thread: int, tag: str) -> CoalescingRun:
    upstream, shape = series.upstream, series.metadata
    if upstream == LIMITED or stack_.with_table.get(version) != series.state_table:
        warm_up(stack_, version, state_table=series.state_table, fresh=upstream == LIMITED)
    event = OUT / f"coalescing-{version}.json"
    stack_.standin.reset()
    if series.seen:  # the same threads' previous batch, untimed: their items exist
        event.write_text(json.dumps(sqs_event(bodies(tag, per_thread, shape))))
        stack_.children[version].invoke(event, state_table=series.state_table, timeout_s=INVOCATION_S)
    sent = bodies(tag, per_thread, shape, first_version=BATCH + 1 if series.seen else 1)
    event.write_text(json.dumps(sqs_event(sent)))
    stack_.standin.reset()
    stack_.standin.rate_limit(RATE_RPS if upstream == LIMITED else None)
    stack_.dynamodb.reset()
    answer = stack_.children[version].invoke(event, state_table=series.state_table, timeout_s=INVOCATION_S)
    table = stack_.dynamodb.stats()
    statuses = [request.status for request in stack_.standin.recorded()]
    stack_.standin.rate_limit(None)
    run = CoalescingRun(
        version=version,
        upstream=upstream,
        metadata=series.label,
        per_thread=per_thread,
        state_table=series.state_table,
        updates=BATCH,
        requests=len(statuses),
        refused=statuses.count(429),
        handed_back=int(answer["handed_back"]),
        dynamodb_calls=sum(table["calls"].values()),
        write_units=int(table["write_units"]),
        read_units=float(table["read_units"]),
        max_item_bytes=int(table["max_item_bytes"]),
        moto_busy_s=float(table["busy_s"]),
        wall_s=float(answer["wall_s"]),
    )
    if upstream == UNTHROTTLED:
        _check_applied(stack_.standin, run, sent)
    return run


def _check_applied(standin: PortkeyStandIn, run: CoalescingRun, sent: Sequence[dict[str, Any]]) -> None:
    """Unthrottled, every update applies: nothing handed back, each thread holds its newest metadata."""
    newest = {body["thread_id"]: body["metadata"] for body in sent}
    wrong = [
        thread
        for thread, wanted in newest.items()
        if (standin.thread(thread) or {}).get("metadata") != wanted
    ]
    if run.handed_back or wrong:
        raise RuntimeError(
            f"coalescing {run.version} x{run.per_thread}: {run.handed_back} handed back, "
            f"{len(wrong)} threads without their newest metadata"
        )


def measure(repeats: int, limited_repeats: int, log: TextIO) -> CoalescingReport:
    """Every series, round-robin over the versions; the event files removed afterwards."""
    before_src, skipped = before.unpack()
    report = CoalescingReport(skipped_before=skipped)
    log.write("coalescing (100 records, state table on, 50 ms answers):\n")
    if skipped:
        log.write(f"  before: skipped, {skipped}\n")
    try:
        with stack(before_src, log) as stack_:
            versions = list(stack_.children)
            for series in SERIES:
                rounds = limited_repeats if series.upstream == LIMITED else repeats
                rounds = 1 if series.metadata == FULL else rounds  # units, not time: one is enough
                for round_index in range(rounds):
                    for per_thread in series.per_thread:
                        for version in versions:
                            tag = (
                                f"{version}{series.upstream[:2]}{series.metadata}{per_thread}"
                                f"{'t' if series.state_table else 'n'}r{round_index}"
                            )
                            run = run_once(stack_, version, series, per_thread, tag)
                            log.write(f"  {run_text(run)}\n")
                            log.flush()
                            report.runs.append(run)
    finally:
        for version in (BEFORE, AFTER):
            (OUT / f"coalescing-{version}.json").unlink(missing_ok=True)
    return report


def run_text(run: CoalescingRun) -> str:
    return (
        f"{run.upstream:<11} {run.metadata:<5} x{run.per_thread:<2} "
        f"{'table' if run.state_table else 'none':<5} {run.version:<6} requests {run.requests:>3} "
        f"(429s {run.refused:>2}), DynamoDB calls {run.dynamodb_calls:>3}, "
        f"write units {run.write_units:>4}, handed back {run.handed_back:>3}, "
        f"wall {run.wall_s * 1000:.0f} ms (moto {run.moto_busy_s * 1000:.0f} ms)"
    )


def summarize(runs: Sequence[CoalescingRun]) -> list[CoalescingRun]:
    """The median of each (series, updates per thread, version), in table order."""
    summaries = []
    for series in SERIES:
        for per_thread in series.per_thread:
            for version in (BEFORE, AFTER):
                mine = [
                    run
                    for run in runs
                    if (run.upstream, run.metadata, run.per_thread, run.state_table, run.version)
                    == (series.upstream, series.label, per_thread, series.state_table, version)
                ]
                if mine:
                    summaries.append(_median(mine))
    return summaries


def _median(runs: Sequence[CoalescingRun]) -> CoalescingRun:
    def mid(name: str) -> Any:
        return statistics.median(getattr(run, name) for run in runs)

    return replace(
        runs[0],
        **{
            name: mid(name)
            for name in ("requests", "refused", "handed_back", "dynamodb_calls", "write_units", "read_units")
        },
        max_item_bytes=max(run.max_item_bytes for run in runs),
        moto_busy_s=mid("moto_busy_s"),
        wall_s=mid("wall_s"),
    )


def _find(
    summaries: Sequence[CoalescingRun],
    version: str,
    upstream: str,
    per_thread: int,
    *,
    state_table: bool = True,
) -> CoalescingRun | None:
    for summary in summaries:
        found = (summary.version, summary.upstream, summary.metadata, summary.per_thread, summary.state_table)
        if found == (version, upstream, SMALL, per_thread, state_table):
            return summary
    return None


def verdicts(report: CoalescingReport) -> list[tuple[str, bool, str]]:
    """(target, passed, measured), for the code after coalescing."""
    summaries = summarize(report.runs)
    results = []
    for per_thread in PER_THREAD:
        after = _find(summaries, AFTER, UNTHROTTLED, per_thread)
        if after is None:
            continue
        where = f"{after.threads} threads x {per_thread}"
        results.append(
            (f"{where}: Portkey requests ≤ threads", after.requests <= after.threads, f"{after.requests:g}")
        )
        results.append(
            (
                f"{where}: DynamoDB calls ≤ 2 x threads",
                after.dynamodb_calls <= 2 * after.threads,
                f"{after.dynamodb_calls:g} (≤ {2 * after.threads})",
            )
        )
    limited = _find(summaries, AFTER, LIMITED, PER_THREAD[-1])
    if limited is not None:
        ok = limited.wall_s <= TARGET_WALL_LIMITED_S and limited.handed_back == 0
        results.append(
            (
                f"{BATCH} updates of {limited.threads} threads at {LIMITED}: ≤ {TARGET_WALL_LIMITED_S:g} s, "
                "0 handed back",
                ok,
                f"{limited.wall_s:.2f} s, {limited.handed_back:g} handed back",
            )
        )
    after_one = _find(summaries, AFTER, UNTHROTTLED, 1, state_table=False)
    before_one = _find(summaries, BEFORE, UNTHROTTLED, 1, state_table=False)
    name = f"unthrottled {BATCH} x {LATENCY_S * 1000:.0f} ms, 1 per thread: within 5 % of before"
    if after_one is not None and before_one is not None:
        change = after_one.wall_s / before_one.wall_s
        tabled = [_find(summaries, version, UNTHROTTLED, 1) for version in (AFTER, BEFORE)]
        with_table = (
            f"; with the table {tabled[0].wall_s / tabled[1].wall_s - 1:+.1%}, moto's own time "
            f"{tabled[0].moto_busy_s * 1000:.0f} ms vs {tabled[1].moto_busy_s * 1000:.0f} ms"
            if tabled[0] and tabled[1]
            else ""
        )
        results.append(
            (
                name + " (request path: no state table)",
                change <= TARGET_UNTHROTTLED_RATIO,
                f"{change - 1:+.1%} ({after_one.wall_s * 1000:.0f} ms vs {before_one.wall_s * 1000:.0f} ms)"
                + with_table,
            )
        )
    elif report.skipped_before:
        results.append((name, False, f"not measured: before skipped ({report.skipped_before})"))
    return results


def markdown(report: CoalescingReport | None) -> list[str]:
    """The table for ``docs/performance.md`` and the targets (nothing when the scenario did not run)."""
    if report is None or not report.runs:
        return []
    summaries = summarize(report.runs)
    lines = [
        "",
        f"Coalescing: {BATCH} SQS records, state table on, {LATENCY_S * 1000:.0f} ms answers; "
        "per update unless said; median of the runs"
        + (f"; before skipped: {report.skipped_before}" if report.skipped_before else "")
        + ".",
        "",
        "| updates per thread | threads | upstream | metadata | state table | version | Portkey requests "
        "| 429 answers | DynamoDB calls | DynamoDB write units | largest item | handed back | wall (batch) "
        "| of which moto |",
        "|---:|---:|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summaries:
        name = f"**{s.version}**" if s.version == AFTER else s.version
        lines.append(
            f"| {s.per_thread} | {s.threads} | {s.upstream} | {s.metadata} "
            f"| {'on' if s.state_table else 'off'} | {name} "
            f"| {s.requests / s.updates:.2f} | {s.refused / s.updates:.2f} "
            f"| {s.dynamodb_calls / s.updates:.2f} "
            f"| {s.write_units / s.updates:.2f} | {s.max_item_bytes:,} B | {s.handed_back:g} "
            f"| {s.wall_s * 1000:.0f} ms | {s.moto_busy_s * 1000:.0f} ms |"
        )
    lines += ["", "| target | result | measured |", "|---|---|---|"]
    lines += [f"| {name} | {'PASS' if ok else 'MISS'} | {value} |" for name, ok, value in verdicts(report)]
    return lines
