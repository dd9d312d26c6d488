"""How the benchmark reports: PASS/MISS per target, the markdown tables, the chart, the stdout table."""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from bench import coalescing, rate_limited
from bench.coalescing import CoalescingReport
from bench.contenders import CONTENDERS, OURS, RAW16, SDK, SEQ
from bench.rate_limited import RateRun
from bench.scenarios import (
    BATCHES,
    CONCURRENCY,
    HEADLINE,
    LATENCIES_S,
    RSS_THREADS,
    RSS_UPDATES_PER_THREAD,
    Cell,
    Mode,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes

# Targets from the issue ("Make it fast").
TARGET_SPEEDUP = 14.0
TARGET_WITHIN_RAW = 1.15
TARGET_COLD_RATIO = 0.25
TARGET_RSS_MIB = 128.0
TARGET_STATE_TABLE_RATIO = 1.25

COLORS = {SEQ: "#999999", SDK: "#d62728", RAW16: "#1f77b4", OURS: "#2ca02c"}


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


def state_table_verdict(cost: dict[str, Any]) -> Verdict:
    """The ordering's price: the headline scenario with the state table against without it."""
    return Verdict(
        f"{cost['batch']} updates @ {cost['latency_s'] * 1000:.0f} ms with the state table: "
        f"≤ {TARGET_STATE_TABLE_RATIO} x without it",
        cost["ratio"] <= TARGET_STATE_TABLE_RATIO,
        f"{cost['ratio']:.2f}x ({format_s(cost['on'])} vs {format_s(cost['off'])}); {_moto_floor(cost)}",
    )


def _moto_floor(cost: dict[str, Any]) -> str:
    """moto serves one call at a time: the two table calls per update cost at least this much."""
    calls = 2 * cost["batch"]
    return (
        f"moto alone needs ≥ {format_s(calls * cost['moto_update_item_s'])} for the {calls} table calls "
        f"({format_s(cost['moto_update_item_s'])} each, one at a time)"
    )


@dataclass
class Results:
    """Everything one bench run measured, and its verdicts: what every output is written from."""

    mode: Mode
    cells: list[Cell]
    headline: dict[str, Cell]
    cold: dict[str, Any]
    imports: dict[str, Any]
    rss: dict[str, Any]
    verdicts: list[Verdict]
    diagnostics: list[dict[str, Any]]
    total_s: float
    state_table: dict[str, Any] = field(default_factory=dict)  # on/off at the headline scenario
    rate_limited: list[RateRun] = field(default_factory=list)
    coalescing: CoalescingReport | None = None

    def as_json(self) -> dict[str, Any]:
        """The ``results.json`` document (every sample)."""
        return {
            "mode": self.mode.name,
            "total_s": self.total_s,
            "cells": [asdict(c) for c in self.cells],
            "cold_start": self.cold,
            "imports": self.imports,
            "rss": self.rss,
            "log_line_cost": self.diagnostics,
            "state_table_cost": self.state_table,
            "targets": [asdict(v) for v in self.verdicts],
            "rate_limited": rate_limited.as_json(self.rate_limited),
            "coalescing": self.coalescing.as_json() if self.coalescing else None,
        }


# --------------------------------------------------------------------------- markdown


def markdown(results: Results) -> str:
    """``results.md``: the tables ``docs/performance.md`` shows."""
    lines = _scenario_table(results)
    lines += _cold_start_table(results.mode, results.cold)
    lines += _rss_and_targets(results.rss, results.verdicts)
    lines += _imports_line(results.imports)
    lines += _log_line_cost_table(results.diagnostics)
    lines += _state_table_lines(results.state_table)
    lines += rate_limited.markdown(results.rate_limited)
    lines += coalescing.markdown(results.coalescing)
    return "\n".join(lines) + "\n"


def _state_table_lines(cost: dict[str, Any]) -> list[str]:
    if not cost:
        return []
    return [
        "",
        f"Our handler with and without the state table (moto DynamoDB on loopback), "
        f"{cost['batch']} updates at {cost['latency_s'] * 1000:.0f} ms, same run: "
        f"{format_s(cost['on'])} with, {format_s(cost['off'])} without ({cost['ratio']:.2f}x); "
        f"{_moto_floor(cost)}.",
    ]


def _scenario_table(results: Results) -> list[str]:
    mode, cells = results.mode, results.cells
    lines = [
        f"Measured with `make bench` ({mode.name} mode) on {os.cpu_count()} CPU cores, Python "
        f"{platform.python_version()}, against `bench/latency_server.py` (loopback, its own process). "
        f"Warm invocations, median of up to {mode.repeats} runs; `MAX_CONCURRENCY=16`. Whole bench: "
        f"{results.total_s:.0f} s.",
        "",
        f"| latency | batch | {SEQ} | {SDK} | {RAW16} | **{OURS}** | ours vs sequential | ours / x16 "
        "| ours vs SDK |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in (c for c in cells if c.contender == OURS):
        lines.append(_scenario_row(_row(cells, cell.latency_s, cell.batch), cell.latency_s, cell.batch))
    if any(c.skipped for c in cells):
        lines += [
            "",
            "\\* not run in quick mode (one request at a time would take long); extrapolated from the "
            "largest measured batch at the same latency. `make bench` without `--quick` runs them.",
        ]
    return lines


def _row(cells: list[Cell], latency_s: float, batch: int) -> dict[str, Cell]:
    """The contenders' cells of one scenario, by contender name."""
    return {c.contender: c for c in cells if c.latency_s == latency_s and c.batch == batch}


def _scenario_row(row: dict[str, Cell], latency_s: float, batch: int) -> str:
    seq_value, sdk_value, ours_value = row[SEQ].value_s, row[SDK].value_s, row[OURS].median_s
    headline_mark = " ← target" if (latency_s, batch) == HEADLINE else ""
    return (
        f"| {latency_s * 1000:.0f} ms | {batch:,}{headline_mark} | {cell_text(row[SEQ])} | "
        f"{cell_text(row[SDK])} | {cell_text(row[RAW16])} | **{cell_text(row[OURS])}** | "
        f"{ratio_text(ratio(seq_value, ours_value), estimated=not row[SEQ].samples)} | "
        f"{ratio_text(ratio(ours_value, row[RAW16].median_s))} | "
        f"{ratio_text(ratio(sdk_value, ours_value), estimated=not row[SDK].samples)} |"
    )


def _cold_start_table(mode: Mode, cold: dict[str, Any]) -> list[str]:
    lines = [
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
    return lines


def _rss_and_targets(rss: dict[str, Any], results: list[Verdict]) -> list[str]:
    count = RSS_THREADS * RSS_UPDATES_PER_THREAD
    lines = [
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
    return lines


def _imports_line(imports: dict[str, Any]) -> list[str]:
    def notable(which: str) -> str:
        return ", ".join(f"`{name}` {seconds * 1000:.0f} ms" for name, seconds in imports[which]["notable"])

    return [
        "",
        "Imports during one cold start (`python -X importtime`, which inflates them; cumulative, each "
        f"counted where first imported): ours {imports['ours']['total_import_s'] * 1000:.0f} ms in all "
        f"({notable('ours')}); SDK handler {imports['sdk']['total_import_s'] * 1000:.0f} ms "
        f"({notable('sdk')}).",
    ]


def _log_line_cost_table(diagnostics: list[dict[str, Any]]) -> list[str]:
    if not diagnostics:
        return []
    return [
        "",
        "Cost of the per-update INFO log line (our handler with the Logger at WARNING, same runs):",
        "",
        "| latency | batch | ours | ours without per-update lines | urllib3 x16 |",
        "|---:|---:|---:|---:|---:|",
    ] + [
        f"| {d['latency_s'] * 1000:.0f} ms | {d['batch']:,} | {format_s(d['info'])} | "
        f"{format_s(d['warning'])} | {format_s(d['raw'])} |"
        for d in diagnostics
    ]


# --------------------------------------------------------------------------- chart


def chart(cells: list[Cell], headline: dict[str, Cell], cold: dict[str, Any], path: Path) -> None:
    """``bench.png``: time per batch at each latency, the target scenario, cold start, overhead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, grid = plt.subplots(2, 3, figsize=(16, 9.5))
    axes = list(grid.flat)
    for axis, latency_s in zip(axes, LATENCIES_S, strict=False):
        _latency_panel(axis, cells, latency_s)
    axes[0].legend(fontsize=8)
    _headline_panel(axes[len(LATENCIES_S)], headline)
    _cold_start_panel(axes[len(LATENCIES_S) + 1], cold)
    _overhead_panel(axes[len(LATENCIES_S) + 2], cells)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def _latency_panel(axis: Axes, cells: list[Cell], latency_s: float) -> None:
    """Time per batch over batch size, one line per contender; dotted where extrapolated."""
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


def _headline_panel(axis: Axes, headline: dict[str, Cell]) -> None:
    latency_s, batch = HEADLINE
    values = [headline[name].median_s or 0.0 for name in CONTENDERS]
    bars = axis.bar(range(len(CONTENDERS)), values, color=[COLORS[n] for n in CONTENDERS])
    axis.bar_label(bars, labels=[format_s(v) for v in values], fontsize=8)
    axis.set_xticks(range(len(CONTENDERS)), [n.replace(" ", "\n", 1) for n in CONTENDERS], fontsize=8)
    axis.set_ylabel("time per batch (s)")
    axis.set_title(f"{batch} updates @ {latency_s * 1000:.0f} ms (target)")


def _cold_start_panel(axis: Axes, cold: dict[str, Any]) -> None:
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


def _overhead_panel(axis: Axes, cells: list[Cell]) -> None:
    """Our handler's time over urllib3 x16's, per batch size, one line per latency."""
    for latency_s, marker in zip(LATENCIES_S, ("o", "s", "^"), strict=True):
        ratios: list[tuple[int, float]] = []
        for batch in BATCHES:
            row = _row(cells, latency_s, batch)
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


# --------------------------------------------------------------------------- stdout


def print_table(cells: list[Cell], out: TextIO) -> None:
    out.write(f"\n{'latency':>8} {'batch':>6}" + "".join(f" {name:>20}" for name in CONTENDERS))
    out.write(f" {'ours vs seq':>12} {'ours/x16':>9}\n")
    for cell in (c for c in cells if c.contender == OURS):
        row = _row(cells, cell.latency_s, cell.batch)
        out.write(f"{cell.latency_s * 1000:>6.0f}ms {cell.batch:>6}")
        out.write("".join(f" {cell_text(row[name]):>20}" for name in CONTENDERS))
        speedup = ratio(row[SEQ].value_s, cell.median_s)
        out.write(
            f" {ratio_text(speedup, estimated=not row[SEQ].samples):>12}"
            f" {ratio_text(ratio(cell.median_s, row[RAW16].median_s)):>9}\n"
        )


def print_summary(results: Results, written: list[Path], out: TextIO) -> None:
    """The stdout ending: the table, PASS/MISS per target, cold start, what was written."""
    print_table(results.cells, out)
    out.write("\n")
    for verdict in results.verdicts:
        out.write(f"{'PASS' if verdict.passed else 'MISS'}  {verdict.name}: {verdict.detail}\n")
    for name, passed, measured in coalescing.verdicts(results.coalescing) if results.coalescing else []:
        out.write(f"{'PASS' if passed else 'MISS'}  coalescing, {name}: {measured}\n")
    cold = results.cold
    out.write(
        f"\ncold start: ours {format_s(cold['ours']['cold_start_s'])} vs SDK "
        f"{format_s(cold['sdk']['cold_start_s'])} (ratio {cold['ratio']:.2f})\n"
        f"wrote {', '.join(str(path) for path in written)}\n"
        f"total {results.total_s:.0f} s\n"
    )
