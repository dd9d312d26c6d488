"""How the benchmark measures: warm timings in this process, cold start and peak RSS in fresh ones.

Warm invocations are timed here, round-robin over the contenders, each warmed up at every latency
first; every timed run checks that all its requests reached the server. Cold start (import + first
1-record invocation) and peak RSS (10,000 records) come from ``bench.child`` in fresh interpreters.
"""

from __future__ import annotations

import json
import logging
import os
import re
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bench.contenders import SEQUENTIAL, Contender, Control, update_bodies
from bench.report import format_s
from bench.scenarios import CONCURRENCY, HEADLINE, RSS_THREADS, RSS_UPDATES_PER_THREAD, Cell, Mode
from devstack.artifact import ISOLATION_FLAGS
from devstack.lambda_events import sqs_event

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
OUT = ROOT / "bench" / "out"
CHILD_TIMEOUT_S = 300.0


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
    found = []
    for latency_s, batch in (HEADLINE, (0.0, 1000)):
        control.set_latency(latency_s)
        warm_up([ours, raw], control, latency_s)
        medians = _log_level_medians(ours, raw, control, mode, latency_s, batch)
        found.append({"latency_s": latency_s, "batch": batch, **medians})
        log.write(
            f"  {latency_s * 1000:>4.0f} ms x {batch:>4}: ours {format_s(medians['info'])}, ours without "
            f"per-update log lines {format_s(medians['warning'])}, urllib3 x16 {format_s(medians['raw'])}\n"
        )
    return found


def _log_level_medians(
    ours: Contender, raw: Contender, control: Control, mode: Mode, latency_s: float, batch: int
) -> dict[str, float]:
    """Median times of ours at INFO ("info"), ours at WARNING ("warning") and urllib3 x16 ("raw")."""
    from thread_updater.observability import logger

    level = logger.log_level
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
    return {variant: statistics.median(values) for variant, values in samples.items()}


def state_table_cost(ours: Contender, control: Control, mode: Mode, log: TextIO) -> dict[str, Any]:
    """Our handler at the headline scenario with the state table (moto DynamoDB on loopback) and
    without it (``THREAD_STATE_TABLE`` empty), round-robin in the same run; medians and their ratio.

    Changing the variable gives the container a new runtime (pool, executor), so each timed run is
    preceded by an untimed warm-up of 16 updates in the same configuration.
    """
    latency_s, batch = HEADLINE
    control.set_latency(latency_s)
    table = os.environ.get("THREAD_STATE_TABLE", "")
    if not table:
        raise RuntimeError("the state table comparison needs THREAD_STATE_TABLE")
    samples: dict[str, list[float]] = {"off": [], "on": []}
    try:
        for index in range(max(mode.repeats, 5)):
            for variant, values in samples.items():
                os.environ["THREAD_STATE_TABLE"] = table if variant == "on" else ""
                ours.call(ours.prepare(f"table{variant}warm{index}", CONCURRENCY))
                values.append(timed(ours, control, f"table{variant}r{index}", batch)[0])
    finally:
        os.environ["THREAD_STATE_TABLE"] = table
    off, on = (statistics.median(samples[variant]) for variant in ("off", "on"))
    call_s = _moto_update_item_s(table)
    log.write(
        f"  {latency_s * 1000:>4.0f} ms x {batch:>4}: ours with the state table {format_s(on)}, "
        f"without {format_s(off)} (x{on / off:.2f}); one UpdateItem in moto takes {format_s(call_s)}\n"
    )
    runs = {f"runs_{variant}_s": values for variant, values in samples.items()}
    return {
        **{"latency_s": latency_s, "batch": batch, "on": on, "off": off, "ratio": on / off},
        **{"moto_update_item_s": call_s, **runs},
    }


def _moto_update_item_s(table: str, calls: int = 50) -> float:
    """Median time of one conditional UpdateItem in moto, one at a time from here: what each of the
    two table calls per update costs at least, before any of the function's own work."""
    import boto3

    dynamodb = boto3.client("dynamodb")
    times = []
    for index in range(calls):
        started = time.perf_counter()
        dynamodb.update_item(
            TableName=table,
            Key={"thread_id": {"S": f"bench-probe-{index}"}},
            UpdateExpression="SET lease_until = :until",
            ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :until",
            ExpressionAttributeValues={":until": {"N": "1"}},
        )
        times.append(time.perf_counter() - started)
    return statistics.median(times)


# --------------------------------------------------------------------------- fresh interpreters


# Linux carries ru_maxrss across execve, so a child spawned by this (large) process would start
# with our peak RSS; a small launcher in between gives bench.child a clean one.
LAUNCHER = "import subprocess, sys; sys.exit(subprocess.call(sys.argv[1:]))"


def run_child(
    which: str, event_path: Path, *extra_args: str, python: str | None = None, src: Path | None = None
) -> tuple[dict[str, Any], str]:
    """``bench.child`` in a fresh interpreter: this one, or ``python`` isolated from every
    site-packages (``-S -B``: only the stdlib, the repository for ``bench.child`` and ``src``);
    ``src``: where ``ours`` imports ``handler`` from (a built artifact), default this tree's src/."""
    # The function's code first (this version of it, on purpose), the repository after it (bench,
    # devstack) for an interpreter isolated from the installed project.
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(src or SRC), str(ROOT)])}
    interpreter = [python, *ISOLATION_FLAGS] if python else [sys.executable]
    command = [
        sys.executable,
        "-c",
        LAUNCHER,
        *interpreter,
        *extra_args,
        "-m",
        "bench.child",
        which,
        "--event",
        str(event_path),
        *(["--src", str(src)] if src else []),
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
