"""Benchmark: our handler against the naive and the practical ways of calling Modify Thread.

``python -m bench.run [--quick]`` from the repository root (``make bench``). Not part of the tests.

Contenders, all against the same local Portkey-like server (``bench.latency_server``, its own
process, loopback, free port, a fixed answer latency):

1. ``sequential urllib3`` - one keep-alive connection, one request after another (the naive floor);
2. ``Portkey SDK handler`` - ``bench/sdk_handler.py``, the obvious Lambda written with
   ``portkey_ai.Portkey().beta.threads.update`` one record at a time;
3. ``urllib3 x16`` - 16 requests in flight (``ThreadPoolExecutor`` over one ``PoolManager``), the
   practical limit for ``MAX_CONCURRENCY=16``;
4. ``our handler`` - ``handler.lambda_handler`` with an SQS event (distinct thread ids per record),
   ``MAX_CONCURRENCY=16``, its secret and DLQ in moto.

Warm invocations are timed in this process (each contender is warmed up at every latency first);
cold start (import + first 1-record invocation) and peak RSS (10,000 records) are measured in fresh
interpreters (``bench.child``). Writes ``bench/out/results.md``, ``bench/out/results.json`` and
``bench/out/bench.png``, and stops every server and process it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

import urllib3

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
for _path in (str(SRC), str(ROOT)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench.latency_server import LatencyServerProcess  # noqa: E402
from devstack.lambda_events import LocalContext, sqs_event  # noqa: E402
from devstack.local_aws import create_resources, function_environment, moto_server  # noqa: E402

OUT = ROOT / "bench" / "out"
SECRET = {"api_key": "pk-bench-api-key", "virtual_key": "vk-bench-virtual-key"}
CONCURRENCY = 16
LATENCIES_S = (0.0, 0.020, 0.100)
BATCHES = (10, 100, 1000)
HEADLINE = (0.050, 100)
RSS_THREADS, RSS_UPDATES_PER_THREAD = 2500, 4
INVOKE_TIMEOUT_S = 900.0  # Lambda's maximum; the template's 60 s would cut the slow baselines
CHILD_TIMEOUT_S = 300.0

# Targets from the issue ("Make it fast").
TARGET_SPEEDUP = 14.0
TARGET_WITHIN_RAW = 1.15
TARGET_COLD_RATIO = 0.25
TARGET_RSS_MIB = 128.0

SEQ = "sequential urllib3"
SDK = "Portkey SDK handler"
RAW16 = "urllib3 x16"
OURS = "our handler"
CONTENDERS = (SEQ, SDK, RAW16, OURS)
SEQUENTIAL = (SEQ, SDK)  # one request at a time: skipped in --quick when they would take long
COLORS = {SEQ: "#999999", SDK: "#d62728", RAW16: "#1f77b4", OURS: "#2ca02c"}


@dataclass(frozen=True)
class Mode:
    name: str
    repeats: int  # timed runs per contender and scenario (median reported)
    budget_s: float  # ...but no further runs once a contender has spent this long on a scenario
    sequential_limit_s: float  # skip a sequential contender when batch x latency exceeds this
    cold_runs: int


QUICK = Mode("quick", repeats=3, budget_s=3.0, sequential_limit_s=5.0, cold_runs=3)
FULL = Mode("full", repeats=5, budget_s=8.0, sequential_limit_s=1e9, cold_runs=5)


@dataclass
class Cell:
    """One contender on one scenario."""

    contender: str
    latency_s: float
    batch: int
    samples: list[float] = field(default_factory=list)
    max_in_flight: int = 0
    skipped: str | None = None
    estimate_s: float | None = None  # for a skipped sequential run: extrapolated from the same latency

    @property
    def median_s(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    @property
    def value_s(self) -> float | None:
        return self.median_s if self.samples else self.estimate_s


# --------------------------------------------------------------------------- the contenders


class Control:
    """The latency server's control endpoints."""

    def __init__(self, root: str) -> None:
        self._root = root
        self._pool = urllib3.PoolManager(maxsize=1, retries=False, timeout=10.0)

    def _call(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        response = self._pool.request(method, f"{self._root}{path}", json=body)
        if response.status != 200:
            raise RuntimeError(f"latency server {path}: HTTP {response.status}")
        document: dict[str, Any] = response.json()
        return document

    def set_latency(self, seconds: float) -> None:
        self._call("POST", "/_control/latency", {"seconds": seconds})

    def reset(self) -> None:
        self._call("POST", "/_control/reset")

    def stats(self) -> dict[str, Any]:
        return self._call("GET", "/_control/stats")

    def close(self) -> None:
        self._pool.clear()


def raw_headers(trace_id: str) -> dict[str, str]:
    """What our client sends: the secret's headers plus the fixed ones."""
    return {
        "x-portkey-api-key": SECRET["api_key"],
        "x-portkey-virtual-key": SECRET["virtual_key"],
        "Content-Type": "application/json",
        "OpenAI-Beta": "assistants=v2",
        "x-portkey-trace-id": trace_id,
    }


def update_bodies(tag: str, count: int, threads: int | None = None) -> list[dict[str, Any]]:
    """``count`` updates over distinct thread ids (or ``threads`` ids, round-robin)."""
    spread = threads or count
    return [
        {"thread_id": f"thread_{tag}_{index % spread}", "metadata": {"seq": str(index), "source": "bench"}}
        for index in range(count)
    ]


class Contender:
    name = ""

    def prepare(self, tag: str, count: int) -> Any:
        raise NotImplementedError

    def call(self, prepared: Any) -> None:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the contender holds (pools, executors)."""


class SequentialRaw(Contender):
    name = SEQ

    def __init__(self, base_url: str) -> None:
        self._base_url = base_url
        self._pool = urllib3.PoolManager(maxsize=1, block=True, retries=False, timeout=30.0)

    def prepare(self, tag: str, count: int) -> Any:
        return [
            (
                f"{self._base_url}/threads/{body['thread_id']}",
                json.dumps({"metadata": body["metadata"]}, separators=(",", ":")).encode(),
                raw_headers(f"{tag}-{index}"),
            )
            for index, body in enumerate(update_bodies(tag, count))
        ]

    def post(self, request: tuple[str, bytes, dict[str, str]]) -> None:
        url, body, headers = request
        response = self._pool.request("POST", url, body=body, headers=headers, redirect=False)
        if response.status != 200:
            raise RuntimeError(f"{self.name}: HTTP {response.status}")

    def call(self, prepared: Any) -> None:
        for request in prepared:
            self.post(request)

    def close(self) -> None:
        self._pool.clear()


class ConcurrentRaw(SequentialRaw):
    name = RAW16

    def __init__(self, base_url: str) -> None:
        super().__init__(base_url)
        self._pool = urllib3.PoolManager(maxsize=CONCURRENCY, block=True, retries=False, timeout=30.0)
        self._executor = ThreadPoolExecutor(max_workers=CONCURRENCY, thread_name_prefix="raw")

    def call(self, prepared: Any) -> None:
        for _ in self._executor.map(self.post, prepared):
            pass

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        super().close()


class HandlerContender(Contender):
    """A Lambda handler fed an SQS event; its stdout (logs, EMF metrics) goes to /dev/null."""

    def __init__(self, name: str, handler: Callable[[dict[str, Any], Any], Any], sink: TextIO) -> None:
        self.name = name
        self._handler = handler
        self._sink = sink

    def prepare(self, tag: str, count: int) -> Any:
        return sqs_event(update_bodies(tag, count))

    def call(self, prepared: Any) -> None:
        with contextlib.redirect_stdout(self._sink):
            response = self._handler(prepared, LocalContext(timeout_s=INVOKE_TIMEOUT_S))
        failures = response.get("batchItemFailures") if isinstance(response, dict) else None
        if failures:
            raise RuntimeError(f"{self.name}: {len(failures)} records failed")


def load_handlers(sink: TextIO) -> tuple[Callable[..., Any], Callable[..., Any]]:
    """Import both handlers with stdout on ``sink``: Powertools' Logger keeps the stdout it sees."""
    with contextlib.redirect_stdout(sink):
        from bench.sdk_handler import lambda_handler as sdk
        from handler import lambda_handler as ours
    return ours, sdk


# --------------------------------------------------------------------------- warm measurements


def timed(contender: Contender, control: Control, tag: str, count: int) -> tuple[float, int]:
    """One timed call; every update must have reached the server (a dead letter would not)."""
    prepared = contender.prepare(tag, count)
    control.reset()
    started = time.perf_counter()
    contender.call(prepared)
    elapsed = time.perf_counter() - started
    stats = control.stats()
    if stats["requests"] != count:
        raise RuntimeError(f"{contender.name}: {stats['requests']} requests reached the server, not {count}")
    return elapsed, int(stats["max_in_flight"])


def measure_scenario(
    contenders: Sequence[Contender], control: Control, mode: Mode, latency_s: float, batch: int, log: TextIO
) -> dict[str, Cell]:
    """Round-robin over the contenders (so machine noise spreads evenly), median of the runs."""
    cells = {c.name: Cell(c.name, latency_s, batch) for c in contenders}
    for contender in contenders:
        expected = batch * latency_s
        if contender.name in SEQUENTIAL and expected > mode.sequential_limit_s:
            cells[contender.name].skipped = f"skipped in --{mode.name} (≈{expected:.0f} s)"
    for round_index in range(mode.repeats):
        for contender in contenders:
            cell = cells[contender.name]
            if cell.skipped or (cell.samples and sum(cell.samples) >= mode.budget_s):
                continue
            tag = f"{contender.name[:3]}{int(latency_s * 1000)}x{batch}r{round_index}".replace(" ", "")
            elapsed, in_flight = timed(contender, control, tag, batch)
            cell.samples.append(elapsed)
            cell.max_in_flight = max(cell.max_in_flight, in_flight)
    line = "  ".join(
        f"{name}={format_s(cell.median_s) if cell.samples else '—'}" for name, cell in cells.items()
    )
    log.write(f"  {latency_s * 1000:>4.0f} ms x {batch:>4}: {line}\n")
    log.flush()
    return cells


def warm_up(contenders: Sequence[Contender], control: Control, latency_s: float) -> None:
    """Fill every pool (16 connections) and build every cache before timing at this latency."""
    for contender in contenders:
        count = 1 if contender.name in SEQUENTIAL and latency_s > 0.05 else CONCURRENCY
        contender.call(contender.prepare(f"warm{int(latency_s * 1000)}", count))
    control.reset()


def extrapolate(cells: list[Cell]) -> None:
    """A skipped sequential run ≈ batch x the per-request time of the largest measured batch."""
    for cell in cells:
        if not cell.skipped:
            continue
        measured = [
            c for c in cells if c.contender == cell.contender and c.latency_s == cell.latency_s and c.samples
        ]
        if measured:
            largest = max(measured, key=lambda c: c.batch)
            cell.estimate_s = (largest.median_s or 0.0) / largest.batch * cell.batch


def log_line_cost(
    ours: Contender, raw: Contender, control: Control, mode: Mode, log: TextIO
) -> list[dict[str, Any]]:
    """Diagnostic: our handler with and without its per-update INFO line, against urllib3 x16."""
    from thread_updater.observability import logger

    level = logger.log_level
    found = []
    for latency_s, batch in (HEADLINE, (0.0, 1000)):
        control.set_latency(latency_s)
        warm_up([ours, raw], control, latency_s)
        samples: dict[str, list[float]] = {"info": [], "warning": [], "raw": []}
        try:
            for index in range(mode.repeats):
                for variant, values in samples.items():
                    logger.setLevel(logging.WARNING if variant == "warning" else level)
                    contender = raw if variant == "raw" else ours
                    tag = f"log{variant}{int(latency_s * 1000)}x{batch}r{index}"
                    values.append(timed(contender, control, tag, batch)[0])
        finally:
            logger.setLevel(level)
        medians = {variant: statistics.median(values) for variant, values in samples.items()}
        found.append({"latency_s": latency_s, "batch": batch, **medians})
        log.write(
            f"  {latency_s * 1000:>4.0f} ms x {batch:>4}: ours {format_s(medians['info'])}, ours without "
            f"per-update log lines {format_s(medians['warning'])}, urllib3 x16 {format_s(medians['raw'])}\n"
        )
    return found


# --------------------------------------------------------------------------- fresh interpreters


# Linux carries ru_maxrss across execve, so a child spawned by this (large) process would start
# with our peak RSS; a small launcher in between gives bench.child a clean one.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def run_child(which: str, event_path: Path, *extra_args: str) -> tuple[dict[str, Any], str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(SRC)])}
    command = [
        sys.executable,
        "-c",
        LAUNCHER,
        sys.executable,
        *extra_args,
        "-m",
        "bench.child",
        which,
        "--event",
        str(event_path),
    ]
    started = time.perf_counter()
    completed = subprocess.run(
        command,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=CHILD_TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    wall = time.perf_counter() - started
    if completed.returncode != 0:
        raise RuntimeError(f"bench.child {which} failed ({completed.returncode}): {completed.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    result["process_wall_s"] = wall
    if result["failures"]:
        raise RuntimeError(f"bench.child {which}: {result['failures']} records failed")
    return result, completed.stderr


def write_event(path: Path, tag: str, count: int, threads: int | None = None) -> Path:
    path.write_text(json.dumps(sqs_event(update_bodies(tag, count, threads))))
    return path


def cold_starts(mode: Mode, log: TextIO) -> dict[str, Any]:
    """Import + first 1-record invocation in a fresh interpreter, alternating ours/SDK; medians."""
    runs: dict[str, list[dict[str, Any]]] = {"ours": [], "sdk": []}
    for index in range(mode.cold_runs):
        for which in ("ours", "sdk"):
            event = write_event(OUT / f"cold-{which}.json", f"cold{which}{index}", 1)
            result, _ = run_child(which, event)
            runs[which].append(result)
            log.write(
                f"  cold start {which:<4} #{index + 1}: import {format_s(result['import_s'])} + first "
                f"invocation {format_s(result['first_invoke_s'])} = {format_s(result['cold_start_s'])}\n"
            )
            log.flush()
    summary: dict[str, Any] = {"runs": runs}
    for which, results in runs.items():
        summary[which] = {
            key: statistics.median(r[key] for r in results)
            for key in ("import_s", "first_invoke_s", "cold_start_s", "process_wall_s", "peak_rss_kib")
        }
    summary["ratio"] = summary["ours"]["cold_start_s"] / summary["sdk"]["cold_start_s"]
    return summary


_IMPORTTIME = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")
# Modules whose cumulative import time explains a cold start (each is imported once; its line in
# -X importtime carries everything it pulled in that was not loaded before).
NOTABLE_IMPORTS = {
    "ours": (
        "handler",
        "aws_lambda_powertools.utilities.parser.models",
        "aws_lambda_powertools.utilities.batch",
        "pydantic",
        "urllib3",
        "aws_lambda_powertools.utilities.parameters",
        "boto3",
    ),
    "sdk": ("bench.sdk_handler", "portkey_ai", "httpx", "boto3"),
}


def import_breakdown(which: str) -> dict[str, Any]:
    """One ``python -X importtime`` cold start: the notable modules' cumulative import times.

    (``-X importtime`` itself slows imports down; compare the numbers with each other.)
    """
    event = write_event(OUT / f"cold-{which}.json", f"importtime{which}", 1)
    _, stderr = run_child(which, event, "-X", "importtime")
    cumulative: dict[str, float] = {}
    total_us = 0
    for line in stderr.splitlines():
        match = _IMPORTTIME.match(line)
        if match:
            total_us += int(match.group(1))
            cumulative.setdefault(match.group(4), int(match.group(2)) / 1e6)
    notable = [(name, cumulative[name]) for name in NOTABLE_IMPORTS[which] if name in cumulative]
    return {"total_import_s": total_us / 1e6, "notable": notable}


def peak_rss(log: TextIO) -> dict[str, Any]:
    count = RSS_THREADS * RSS_UPDATES_PER_THREAD
    event = write_event(OUT / "rss-event.json", "rss", count, RSS_THREADS)
    result, _ = run_child("ours", event)
    log.write(
        f"  peak RSS, {count:,} records: {result['peak_rss_kib'] / 1024:.1f} MiB "
        f"(after import {result['rss_after_import_kib'] / 1024:.1f} MiB, with the event "
        f"{result['rss_with_event_kib'] / 1024:.1f} MiB; invocation {format_s(result['first_invoke_s'])})\n"
    )
    event.unlink()
    return result


# --------------------------------------------------------------------------- report


def format_s(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds >= 1:
        return f"{seconds:.2f} s"
    return f"{seconds * 1000:.1f} ms" if seconds < 0.1 else f"{seconds * 1000:.0f} ms"


def cell_text(cell: Cell) -> str:
    if cell.samples:
        return format_s(cell.median_s)
    if cell.estimate_s is not None:
        return f"~{format_s(cell.estimate_s)}*"
    return "skipped"


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return numerator / denominator


def ratio_text(value: float | None, *, estimated: bool = False, suffix: str = "x") -> str:
    if value is None:
        return "—"
    return f"{'~' if estimated else ''}{value:.1f}{suffix}" if value >= 10 else f"{value:.2f}{suffix}"


@dataclass
class Verdict:
    name: str
    passed: bool
    detail: str


def verdicts(headline: dict[str, Cell], cold: dict[str, Any], rss: dict[str, Any]) -> list[Verdict]:
    ours, seq, raw = (headline[name].median_s for name in (OURS, SEQ, RAW16))
    speedup = ratio(seq, ours) or 0.0
    raw_speedup = ratio(seq, raw) or 0.0
    within = ratio(ours, raw) or float("inf")
    latency_s, batch = HEADLINE
    ceiling = batch / -(-batch // CONCURRENCY)
    rss_mib = rss["peak_rss_kib"] / 1024
    return [
        Verdict(
            f"{batch} updates @ {latency_s * 1000:.0f} ms: ≥ {TARGET_SPEEDUP:.0f}x faster than sequential",
            speedup >= TARGET_SPEEDUP,
            f"{speedup:.2f}x ({format_s(seq)} → {format_s(ours)}); urllib3 x16 reaches {raw_speedup:.2f}x; "
            f"the ideal for {batch} requests in waves of {CONCURRENCY} is {ceiling:.2f}x",
        ),
        Verdict(
            f"{batch} updates @ {latency_s * 1000:.0f} ms: within {round((TARGET_WITHIN_RAW - 1) * 100)} % "
            "of urllib3 x16",
            within <= TARGET_WITHIN_RAW,
            f"ours / urllib3 x16 = {within:.3f} ({format_s(ours)} vs {format_s(raw)})",
        ),
        Verdict(
            f"cold start ≤ {TARGET_COLD_RATIO} x SDK handler's",
            cold["ratio"] <= TARGET_COLD_RATIO,
            f"{cold['ratio']:.3f} ({format_s(cold['ours']['cold_start_s'])} vs "
            f"{format_s(cold['sdk']['cold_start_s'])})",
        ),
        Verdict(
            f"peak RSS ≤ {TARGET_RSS_MIB:.0f} MiB on a {RSS_THREADS * RSS_UPDATES_PER_THREAD:,}-record batch",
            rss_mib <= TARGET_RSS_MIB,
            f"{rss_mib:.1f} MiB",
        ),
    ]


def markdown(
    mode: Mode,
    cells: list[Cell],
    headline: dict[str, Cell],
    cold: dict[str, Any],
    imports: dict[str, Any],
    rss: dict[str, Any],
    results: list[Verdict],
    diagnostics: list[dict[str, Any]],
    total_s: float,
) -> str:
    lines = [
        f"Measured with `make bench` ({mode.name} mode) on {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}, against `bench/latency_server.py` (loopback, its own process). "
        f"Warm invocations, median of up to {mode.repeats} runs; `MAX_CONCURRENCY=16`. Whole bench: "
        f"{total_s:.0f} s.",
        "",
        f"| latency | batch | {SEQ} | {SDK} | {RAW16} | **{OURS}** | ours vs sequential | ours / x16 "
        "| ours vs SDK |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    scenarios = [(c.latency_s, c.batch) for c in cells if c.contender == OURS]
    for latency_s, batch in scenarios:
        row = {c.contender: c for c in cells if c.latency_s == latency_s and c.batch == batch}
        seq_value, sdk_value, ours_value = row[SEQ].value_s, row[SDK].value_s, row[OURS].median_s
        headline_mark = " ← target" if (latency_s, batch) == HEADLINE else ""
        lines.append(
            f"| {latency_s * 1000:.0f} ms | {batch:,}{headline_mark} | {cell_text(row[SEQ])} | "
            f"{cell_text(row[SDK])} | {cell_text(row[RAW16])} | **{cell_text(row[OURS])}** | "
            f"{ratio_text(ratio(seq_value, ours_value), estimated=not row[SEQ].samples)} | "
            f"{ratio_text(ratio(ours_value, row[RAW16].median_s))} | "
            f"{ratio_text(ratio(sdk_value, ours_value), estimated=not row[SDK].samples)} |"
        )
    if any(c.skipped for c in cells):
        lines += [
            "",
            "\\* not run in quick mode (one request at a time would take long); extrapolated from the "
            "largest measured batch at the same latency. `make bench` without `--quick` runs them.",
        ]
    lines += [
        "",
        "| cold start (fresh interpreter, median of "
        f"{mode.cold_runs}) | import | first 1-record invocation | total | peak RSS |",
        "|---|---:|---:|---:|---:|",
    ]
    for which, label in (("sdk", SDK), ("ours", OURS)):
        summary = cold[which]
        lines.append(
            f"| {label} | {format_s(summary['import_s'])} | {format_s(summary['first_invoke_s'])} | "
            f"{format_s(summary['cold_start_s'])} | {summary['peak_rss_kib'] / 1024:.0f} MiB |"
        )
    lines.append(f"| ours / SDK | | | **{cold['ratio']:.2f}** | |")
    count = RSS_THREADS * RSS_UPDATES_PER_THREAD
    lines += [
        "",
        f"Peak RSS of our handler on a {count:,}-record batch ({RSS_THREADS:,} threads x "
        f"{RSS_UPDATES_PER_THREAD} updates, latency 0, fresh interpreter, `ru_maxrss`): "
        f"**{rss['peak_rss_kib'] / 1024:.1f} MiB** (after import {rss['rss_after_import_kib'] / 1024:.1f} "
        f"MiB; with the parsed event {rss['rss_with_event_kib'] / 1024:.1f} MiB; `VmHWM` "
        f"{rss['peak_vmhwm_kib'] / 1024:.1f} MiB; the invocation took {format_s(rss['first_invoke_s'])}).",
        "",
        "| target | result | measured |",
        "|---|---|---|",
    ]
    lines += [f"| {v.name} | {'PASS' if v.passed else '**MISS**'} | {v.detail} |" for v in results]

    def notable(which: str) -> str:
        return ", ".join(f"`{name}` {seconds * 1000:.0f} ms" for name, seconds in imports[which]["notable"])

    lines += [
        "",
        "Imports during one cold start (`python -X importtime`, which inflates them; cumulative, each "
        f"counted where first imported): ours {imports['ours']['total_import_s'] * 1000:.0f} ms in all "
        f"({notable('ours')}); SDK handler {imports['sdk']['total_import_s'] * 1000:.0f} ms "
        f"({notable('sdk')}).",
    ]
    if diagnostics:
        lines += [
            "",
            "Cost of the per-update INFO log line (our handler with the Logger at WARNING, same runs):",
            "",
            "| latency | batch | ours | ours without per-update lines | urllib3 x16 |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {d['latency_s'] * 1000:.0f} ms | {d['batch']:,} | {format_s(d['info'])} | "
            f"{format_s(d['warning'])} | {format_s(d['raw'])} |"
            for d in diagnostics
        ]
    return "\n".join(lines) + "\n"


def chart(cells: list[Cell], headline: dict[str, Cell], cold: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(2, 3, figsize=(16, 9.5))
    axes = list(grid.flat)
    for axis, latency_s in zip(axes, LATENCIES_S, strict=False):
        for name in CONTENDERS:
            points = sorted(
                (c.batch, c.value_s, bool(c.samples))
                for c in cells
                if c.contender == name and c.latency_s == latency_s and c.value_s is not None
            )
            measured = [(b, v) for b, v, real in points if real]
            if measured:
                axis.plot(*zip(*measured, strict=True), marker="o", label=name, color=COLORS[name])
            if any(not real for _, _, real in points):
                axis.plot(
                    [b for b, _, _ in points],
                    [v for _, v, _ in points],
                    linestyle=":",
                    color=COLORS[name],
                )
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.set_xticks(BATCHES, [str(b) for b in BATCHES])
        axis.set_xlabel("batch size (updates)")
        axis.set_ylabel("time per batch (s)")
        axis.set_title(f"Portkey latency {latency_s * 1000:.0f} ms")
        axis.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    latency_s, batch = HEADLINE
    axis = axes[len(LATENCIES_S)]
    values = [headline[name].median_s or 0.0 for name in CONTENDERS]
    bars = axis.bar(range(len(CONTENDERS)), values, color=[COLORS[n] for n in CONTENDERS])
    axis.bar_label(bars, labels=[format_s(v) for v in values], fontsize=8)
    axis.set_xticks(range(len(CONTENDERS)), [n.replace(" ", "\n", 1) for n in CONTENDERS], fontsize=8)
    axis.set_ylabel("time per batch (s)")
    axis.set_title(f"{batch} updates @ {latency_s * 1000:.0f} ms (target)")
    axis = axes[len(LATENCIES_S) + 1]
    labels = [SDK, OURS]
    imports = [cold["sdk"]["import_s"], cold["ours"]["import_s"]]
    invokes = [cold["sdk"]["first_invoke_s"], cold["ours"]["first_invoke_s"]]
    axis.bar(range(2), imports, color=["#f4a6a6", "#a6dba6"], label="import")
    bars = axis.bar(range(2), invokes, bottom=imports, color=[COLORS[SDK], COLORS[OURS]], label="1st invoke")
    axis.bar_label(bars, labels=[format_s(a + b) for a, b in zip(imports, invokes, strict=True)], fontsize=8)
    axis.set_xticks(range(2), [n.replace(" ", "\n", 1) for n in labels], fontsize=8)
    axis.set_ylabel("seconds")
    axis.set_title(f"cold start (ours / SDK = {cold['ratio']:.2f})")
    axis.legend(fontsize=8)
    axis = axes[len(LATENCIES_S) + 2]
    for latency_s, marker in zip(LATENCIES_S, ("o", "s", "^"), strict=True):
        ratios: list[tuple[int, float]] = []
        for batch in BATCHES:
            row = {c.contender: c for c in cells if c.latency_s == latency_s and c.batch == batch}
            value = ratio(row[OURS].median_s, row[RAW16].median_s)
            if value is not None:
                ratios.append((batch, value))
        if ratios:
            axis.plot(*zip(*ratios, strict=True), marker=marker, label=f"{latency_s * 1000:.0f} ms")
    axis.axhline(
        TARGET_WITHIN_RAW, color="#d62728", linestyle="--", linewidth=1, label="target (100 @ 50 ms)"
    )
    axis.axhline(1.0, color="#999999", linewidth=1)
    axis.set_xscale("log")
    axis.set_xticks(BATCHES, [str(b) for b in BATCHES])
    axis.set_xlabel("batch size (updates)")
    axis.set_ylabel("our handler / urllib3 x16 (time)")
    axis.set_title("overhead over 16 raw requests in flight")
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def print_table(cells: list[Cell], out: TextIO) -> None:
    out.write(f"\n{'latency':>8} {'batch':>6}" + "".join(f" {name:>20}" for name in CONTENDERS))
    out.write(f" {'ours vs seq':>12} {'ours/x16':>9}\n")
    for cell in (c for c in cells if c.contender == OURS):
        row = {c.contender: c for c in cells if c.latency_s == cell.latency_s and c.batch == cell.batch}
        out.write(f"{cell.latency_s * 1000:>6.0f}ms {cell.batch:>6}")
        out.write("".join(f" {cell_text(row[name]):>20}" for name in CONTENDERS))
        speedup = ratio(row[SEQ].value_s, cell.median_s)
        out.write(
            f" {ratio_text(speedup, estimated=not row[SEQ].samples):>12}"
            f" {ratio_text(ratio(cell.median_s, row[RAW16].median_s)):>9}\n"
        )


# --------------------------------------------------------------------------- main


@contextlib.contextmanager
def function_stack(log: TextIO) -> Iterator[tuple[LatencyServerProcess, Control]]:
    """The latency server (child process) and moto with the function's resources, env set."""
    with LatencyServerProcess() as server, moto_server() as endpoint:
        resources = create_resources(endpoint, SECRET)
        saved = dict(os.environ)
        os.environ.update(
            function_environment(resources, server.url, MAX_CONCURRENCY=str(CONCURRENCY)),
        )
        control = Control(server.root)
        log.write(f"latency server {server.url}, moto {endpoint}\n")
        try:
            yield server, control
        finally:
            control.close()
            os.environ.clear()
            os.environ.update(saved)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats, and skip sequential runs that would take more than 5 s (extrapolated)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    # Powertools warns at the end of an invocation whose metrics were all auto-flushed already (it
    # flushes a metric at 100 values; PortkeyLatency gets one per update): noise for this table.
    warnings.filterwarnings("ignore", message="No application metrics to publish")
    mode = QUICK if args.quick else FULL
    out = sys.stdout
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    out.write(f"bench ({mode.name} mode): {os.cpu_count()} CPUs, Python {platform.python_version()}\n")
    contenders: list[Contender] = []
    with open(os.devnull, "w") as sink, function_stack(out) as (server, control):
        try:
            ours_handler, sdk_handler = load_handlers(sink)
            contenders = [
                SequentialRaw(server.url),
                HandlerContender(SDK, sdk_handler, sink),
                ConcurrentRaw(server.url),
                HandlerContender(OURS, ours_handler, sink),
            ]
            cells: list[Cell] = []
            out.write("warm invocations (median):\n")
            for latency_s in LATENCIES_S:
                control.set_latency(latency_s)
                warm_up(contenders, control, latency_s)
                for batch in BATCHES:
                    cells += measure_scenario(contenders, control, mode, latency_s, batch, out).values()
            control.set_latency(HEADLINE[0])
            warm_up(contenders, control, HEADLINE[0])
            headline_mode = Mode(mode.name, mode.repeats, mode.budget_s, 1e9, mode.cold_runs)
            headline = measure_scenario(contenders, control, headline_mode, *HEADLINE, out)
            cells += headline.values()
            extrapolate(cells)
            out.write("diagnostics:\n")
            diagnostics = log_line_cost(contenders[3], contenders[2], control, mode, out)
            control.set_latency(0.0)
            out.write("fresh interpreters:\n")
            cold = cold_starts(mode, out)
            imports = {which: import_breakdown(which) for which in ("ours", "sdk")}
            rss = peak_rss(out)
        finally:
            for contender in contenders:
                contender.close()
    total_s = time.perf_counter() - started
    results = verdicts(headline, cold, rss)
    report = markdown(mode, cells, headline, cold, imports, rss, results, diagnostics, total_s)
    (OUT / "results.md").write_text(report)
    (OUT / "results.json").write_text(
        json.dumps(
            {
                "mode": mode.name,
                "total_s": total_s,
                "cells": [asdict(c) for c in cells],
                "cold_start": cold,
                "imports": imports,
                "rss": rss,
                "log_line_cost": diagnostics,
                "targets": [asdict(v) for v in results],
            },
            indent=2,
        )
    )
    chart(cells, headline, cold, OUT / "bench.png")
    for name in ("cold-ours.json", "cold-sdk.json"):
        (OUT / name).unlink(missing_ok=True)
    print_table(cells, out)
    out.write("\n")
    for verdict in results:
        out.write(f"{'PASS' if verdict.passed else 'MISS'}  {verdict.name}: {verdict.detail}\n")
    out.write(
        f"\ncold start: ours {format_s(cold['ours']['cold_start_s'])} vs SDK "
        f"{format_s(cold['sdk']['cold_start_s'])} (ratio {cold['ratio']:.2f})\n"
        f"wrote {OUT / 'results.md'}, {OUT / 'results.json'}, {OUT / 'bench.png'}\n"
        f"total {total_s:.0f} s\n"
    )
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted: everything started was stopped\n")
        raise SystemExit(130) from None
