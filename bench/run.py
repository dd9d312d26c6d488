"""Benchmark: our handler against the naive and the practical ways of calling Modify Thread.

``python -m bench.run [--quick]`` from the repository root (``make bench``). Not part of the tests.

Contenders (``bench.contenders``), all against the same local Portkey-like server
(``bench.latency_server``, its own process, loopback, free port, a fixed answer latency):

1. ``sequential urllib3`` - one keep-alive connection, one request after another (the naive floor);
2. ``Portkey SDK handler`` - ``bench/sdk_handler.py``, the obvious Lambda written with
   ``portkey_ai.Portkey().beta.threads.update`` one record at a time;
3. ``urllib3 x16`` - 16 requests in flight (``ThreadPoolExecutor`` over one ``PoolManager``), the
   practical limit for ``MAX_CONCURRENCY=16``;
4. ``our handler`` - ``handler.lambda_handler`` with an SQS event (distinct thread ids per record),
   ``MAX_CONCURRENCY=16``, its secret and DLQ in moto; without the state table in the grid, and
   with and without it at the headline scenario (moto's DynamoDB in its own process,
   ``bench.dynamodb_server``), in the same run.

Warm invocations are timed in this process (each contender is warmed up at every latency first);
cold start (import + first 1-record invocation) and peak RSS (10,000 records) are measured in fresh
interpreters (``bench.child``); see ``bench.measure``. Then the rate-limited scenario
(``bench.rate_limited``; alone with ``--rate-limited-only``) and the coalescing before/after
(``bench.coalescing``, its own stack; alone with ``--coalescing-only``). ``--runtime-python`` runs
only the Lambda runtime comparison (``bench.runtimes``). ``bench.report`` writes
``bench/out/results.md``,
``bench/out/results.json`` and ``bench/out/bench.png``. Stops every server and process it started,
also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO
from unittest import mock

from bench import coalescing, rate_limited, runtimes
from bench.contenders import SECRET, Contender, Control, all_contenders, load_handlers
from bench.dynamodb_server import DynamoDBProcess
from bench.latency_server import LatencyServerProcess
from bench.measure import (
    OUT,
    cold_starts,
    extrapolate,
    import_breakdown,
    log_line_cost,
    measure_scenario,
    peak_rss,
    state_table_cost,
    warm_up,
)
from bench.report import (
    Results,
    chart,
    markdown,
    print_summary,
    state_table_verdict,
    verdicts,
)
from bench.scenarios import BATCHES, CONCURRENCY, FULL, HEADLINE, LATENCIES_S, QUICK, Cell, Mode
from devstack.local_aws import (
    create_resources,
    create_state_table,
    function_environment,
    moto_server,
)


@contextlib.contextmanager
def function_stack(log: TextIO) -> Iterator[tuple[LatencyServerProcess, Control, str]]:
    """The latency server and moto's DynamoDB (child processes), moto with the function's other
    resources, env set. Yields the state table's name too: ``THREAD_STATE_TABLE`` stays empty
    (no table) except where a measurement sets it, because moto's DynamoDB serves one call at a
    time and would otherwise be what the whole grid measures."""
    with LatencyServerProcess() as server, DynamoDBProcess() as dynamodb, moto_server() as endpoint:
        saved = dict(os.environ)
        os.environ["AWS_ENDPOINT_URL_DYNAMODB"] = dynamodb.url
        resources = create_resources(endpoint, SECRET, state_table=False)
        table = create_state_table(f"bench-thread-state-{os.getpid()}")
        os.environ.update(
            function_environment(
                resources, server.url, MAX_CONCURRENCY=str(CONCURRENCY), THREAD_STATE_TABLE=""
            ),
        )
        control = Control(server.root)
        log.write(f"latency server {server.url}, moto {endpoint}, DynamoDB (moto) {dynamodb.url}\n")
        try:
            yield server, control, table
        finally:
            control.close()
            os.environ.clear()
            os.environ.update(saved)


@contextlib.contextmanager
def state_table(name: str) -> Iterator[None]:
    """The function configured with the state table meanwhile (for fresh interpreters too)."""
    os.environ["THREAD_STATE_TABLE"] = name
    try:
        yield
    finally:
        os.environ["THREAD_STATE_TABLE"] = ""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m bench.run", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="fewer repeats, and skip sequential runs that would take more than 5 s (extrapolated)",
    )
    parser.add_argument(
        "--rate-limited-only",
        action="store_true",
        help="only the rate-limited scenario (token buckets of 20/s and 50/s): bench/out/rate_limited.*",
    )
    parser.add_argument(
        "--coalescing-only",
        action="store_true",
        help="only the coalescing before/after (1, 5, 10 updates per thread): bench/out/coalescing.*",
    )
    parser.add_argument(
        "--runtime-python",
        action="append",
        default=[],
        metavar="PYTHON",
        help="only the runtime comparison: cold start and 100 updates @ 50 ms of each interpreter "
        "(repeat the option; the first is the baseline) against an artifact built for its Python "
        "version: bench/out/runtimes.*",
    )
    parser.add_argument(
        "--versus-commit",
        metavar="COMMIT",
        help="only the version comparison: cold start and 100 updates @ 50 ms of COMMIT's function "
        "(the baseline) and this tree's, same interpreter, round-robin: bench/out/versions.*",
    )
    return parser.parse_args(argv)


def warm_cells(
    contenders: Sequence[Contender], control: Control, mode: Mode, out: TextIO
) -> tuple[list[Cell], dict[str, Cell]]:
    """Every scenario of the grid, then the headline one (never skipped); skipped runs extrapolated."""
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
    return cells, headline


def measure_all(mode: Mode, out: TextIO, started: float) -> Results:
    """Warm timings, the log-line diagnostic, then the fresh-interpreter measurements."""
    contenders: list[Contender] = []
    with open(os.devnull, "w") as sink, function_stack(out) as (server, control, table):
        try:
            contenders = all_contenders(server.url, sink)
            cells, headline = warm_cells(contenders, control, mode, out)
            out.write("diagnostics:\n")
            diagnostics = log_line_cost(contenders[3], contenders[2], control, mode, out)
            with state_table(table):
                table_cost = state_table_cost(contenders[3], control, mode, out)
            control.set_latency(0.0)
            out.write("fresh interpreters:\n")
            with state_table(table):  # as deployed; the DynamoDB client is made on first use
                cold = cold_starts(mode, out)
            imports = {which: import_breakdown(which) for which in ("ours", "sdk")}
            rss = peak_rss(out)
            ours, _ = load_handlers(sink)
            rate_runs = rate_limited.measure(ours, RATE_REPEATS[mode.name], sink, out)
        finally:
            for contender in contenders:
                contender.close()
    coalesced = coalescing.measure(*COALESCING_REPEATS[mode.name], out)
    return Results(
        mode=mode,
        cells=cells,
        headline=headline,
        cold=cold,
        imports=imports,
        rss=rss,
        verdicts=[*verdicts(headline, cold, rss), state_table_verdict(table_cost)],
        coalescing=coalesced,
        diagnostics=diagnostics,
        state_table=table_cost,
        total_s=time.perf_counter() - started,
        rate_limited=rate_runs,
    )


RATE_REPEATS = {QUICK.name: 1, FULL.name: 5}
COALESCING_REPEATS = {QUICK.name: (3, 1), FULL.name: (5, 2)}  # (unthrottled, rate-limited) rounds


def coalescing_only(mode: Mode, out: TextIO) -> None:
    """The coalescing before/after alone (its own stack), the table on stdout: bench/out/coalescing.md."""
    report = coalescing.measure(*COALESCING_REPEATS[mode.name], out)
    table = "\n".join(coalescing.markdown(report)) + "\n"
    (OUT / "coalescing.md").write_text(table)
    (OUT / "coalescing.json").write_text(json.dumps(report.as_json(), indent=2))
    out.write(f"{table}wrote {OUT / 'coalescing.md'}, {OUT / 'coalescing.json'}\n")


def rate_limited_only(mode: Mode, out: TextIO) -> None:
    """The rate-limited scenario alone: moto for the function's secret and DLQ (no state table, as in
    the grid), the table on stdout."""
    with open(os.devnull, "w") as sink, moto_server() as endpoint:
        resources = create_resources(endpoint, SECRET, state_table=False)
        environment = function_environment(
            resources, "http://127.0.0.1:9/v1", MAX_CONCURRENCY=str(CONCURRENCY), THREAD_STATE_TABLE=""
        )
        with mock.patch.dict(os.environ, environment):
            handler, _ = load_handlers(sink)
            runs = rate_limited.measure(handler, RATE_REPEATS[mode.name], sink, out)
    table = "\n".join(rate_limited.markdown(runs)) + "\n"
    (OUT / "rate_limited.md").write_text(table)
    rate_limited.chart(runs, OUT / "rate_limited.png")
    out.write(f"{table}wrote {OUT / 'rate_limited.md'}, {OUT / 'rate_limited.png'}\n")


def write_outputs(results: Results) -> list[Path]:
    """``results.md``, ``results.json`` and ``bench.png`` in ``bench/out``; the child events removed."""
    written = [OUT / "results.md", OUT / "results.json", OUT / "bench.png"]
    written[0].write_text(markdown(results))
    written[1].write_text(json.dumps(results.as_json(), indent=2))
    chart(results.cells, results.headline, results.cold, written[2])
    if results.rate_limited:
        written.append(OUT / "rate_limited.png")
        rate_limited.chart(results.rate_limited, written[-1])
    for name in ("cold-ours.json", "cold-sdk.json"):
        (OUT / name).unlink(missing_ok=True)
    return written


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
    if args.rate_limited_only:
        rate_limited_only(mode, out)
        return 0
    if args.runtime_python or args.versus_commit:
        runtimes.run(args.runtime_python, mode.name, out, versus_commit=args.versus_commit)
        return 0
    if args.coalescing_only:
        coalescing_only(mode, out)
        return 0
    results = measure_all(mode, out, started)
    print_summary(results, write_outputs(results), out)
    return 0


if __name__ == "__main__":
    try:
        raise SystemExit(main())
    except KeyboardInterrupt:
        sys.stderr.write("\ninterrupted: everything started was stopped\n")
        raise SystemExit(130) from None
