"""Cost per million updates, itemised, from the bench's measured figures: ``python -m bench.cost``.

Reads the coalescing runs from ``bench/out/results.json`` (``make bench``) or
``bench/out/coalescing.json`` (``--coalescing-only``), and the Portkey SDK handler's time at
100 updates x 50 ms from ``results.json`` when it is there; writes ``bench/out/cost.md`` (the
tables of ``docs/cost.md``). Prices: AWS us-east-1 list prices (``PRICES``, with the date they were
taken); Portkey's requests are counted, not priced (its price depends on the plan).

What one update costs, per service:

* Lambda: one invocation per batch of ``BATCH`` records, and the batch's wall time at the template's
  ``MemorySize`` (256 MB) in GB-seconds. The wall is the bench's, with the state table in moto
  (which serves one call at a time): an upper bound for DynamoDB's parallel, few-millisecond calls;
* SQS: ``SQS_REQUESTS_PER_UPDATE`` - the producer's SendMessage (one message per update) and the
  event source mapping's ReceiveMessage and DeleteMessageBatch, 10 messages a call; every message
  here is under 64 KB (one request each);
* DynamoDB: the write (and read) request units counted per update by ``bench.dynamodb_server``.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.coalescing import BATCH, BEFORE, FULL, SMALL, UNTHROTTLED, CoalescingRun, summarize

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
MILLION = 1_000_000
MEMORY_GB = 256 / 1024  # template.yaml: MemorySize 256
SQS_REQUESTS_PER_UPDATE = 1 + 2 / 10  # send one; receive and delete ten at a time
SDK_WALL_FALLBACK_S = 5.24  # docs/performance.md, latest run: the SDK handler, 100 updates @ 50 ms


@dataclass(frozen=True)
class Prices:
    """AWS us-east-1 list prices, USD, taken 2026-12-03 (aws.amazon.com/<service>/pricing/, docs/cost.md)."""

    taken: str = "2026-12-03"
    lambda_gb_s: float = 0.0000166667  # x86, first 6 billion GB-s a month
    lambda_requests_m: float = 0.20
    sqs_standard_m: float = 0.40  # first 100 billion requests a month
    sqs_fifo_m: float = 0.50
    dynamodb_write_units_m: float = 0.625  # on-demand
    dynamodb_read_units_m: float = 0.125
    eventbridge_events_m: float = 1.00  # custom events put on a bus
    api_destinations_m: float = 0.20  # API destination invocations


PRICES = Prices()


@dataclass(frozen=True, kw_only=True)
class Bill:
    """What a million updates cost on one design, per item (USD), and the Portkey requests they make."""

    design: str
    lambda_requests: float = 0.0
    lambda_gb_s: float = 0.0
    sqs_standard: float = 0.0
    sqs_fifo: float = 0.0
    dynamodb_writes: float = 0.0
    dynamodb_reads: float = 0.0
    eventbridge: float = 0.0
    portkey_requests: float = 0.0  # a count, per million updates

    @property
    def total_standard(self) -> float:
        """Everything AWS bills, on a standard queue (a FIFO queue: add ``sqs_fifo - sqs_standard``)."""
        return (
            self.lambda_requests
            + self.lambda_gb_s
            + self.sqs_standard
            + self.dynamodb_writes
            + self.dynamodb_reads
            + self.eventbridge
        )


def lambda_and_sqs(wall_s: float, prices: Prices = PRICES) -> dict[str, float]:
    batches = MILLION / BATCH
    return {
        "lambda_requests": batches * prices.lambda_requests_m / MILLION,
        "lambda_gb_s": batches * wall_s * MEMORY_GB * prices.lambda_gb_s,
        "sqs_standard": SQS_REQUESTS_PER_UPDATE * prices.sqs_standard_m,
        "sqs_fifo": SQS_REQUESTS_PER_UPDATE * prices.sqs_fifo_m,
    }


def our_bill(run: CoalescingRun, prices: Prices = PRICES) -> Bill:
    """Our handler, from one coalescing summary (per-update figures scaled to a million)."""
    per_update = MILLION / run.updates
    return Bill(
        design=f"{run.version}, {run.per_thread} per thread, {run.metadata}",
        **lambda_and_sqs(run.wall_s, prices),
        dynamodb_writes=run.write_units * per_update * prices.dynamodb_write_units_m / MILLION,
        dynamodb_reads=run.read_units * per_update * prices.dynamodb_read_units_m / MILLION,
        portkey_requests=run.requests * per_update,
    )


def sdk_bill(wall_s: float, prices: Prices = PRICES) -> Bill:
    """The Portkey-SDK handler: one request per update, one at a time, no state table."""
    return Bill(design="Portkey SDK handler", **lambda_and_sqs(wall_s, prices), portkey_requests=MILLION)


def api_destinations_bill(prices: Prices = PRICES) -> Bill:
    """EventBridge API destinations: a custom event and an HTTP call per update; no Lambda, SQS or table."""
    return Bill(
        design="EventBridge API destinations",
        eventbridge=prices.eventbridge_events_m + prices.api_destinations_m,
        portkey_requests=MILLION,
    )


def load(path: Path) -> tuple[list[CoalescingRun], float | None]:
    """The coalescing runs, and the SDK handler's median at 100 x 50 ms (None if not measured)."""
    document: dict[str, Any] = json.loads(path.read_text())
    coalescing = document.get("coalescing", document)
    runs = [CoalescingRun(**run) for run in coalescing["runs"]]
    sdk = [
        cell
        for cell in document.get("cells", [])
        if cell["contender"] == "Portkey SDK handler" and cell["latency_s"] == 0.05 and cell["batch"] == BATCH
    ]
    return runs, statistics.median(sdk[0]["samples"]) if sdk and sdk[0]["samples"] else None


def bills(runs: Sequence[CoalescingRun], sdk_wall_s: float) -> list[Bill]:
    chosen = []
    for summary in summarize(runs):
        wanted = summary.upstream == UNTHROTTLED and summary.state_table and summary.per_thread in (1, 10)
        if wanted and summary.metadata in (SMALL, FULL, f"{FULL}, threads seen"):
            chosen.append(our_bill(summary))
    return [*chosen, sdk_bill(sdk_wall_s), api_destinations_bill()]


def usd(value: float) -> str:
    return f"${value:.3f}" if value < 10 else f"${value:.2f}"


def markdown(all_bills: Sequence[Bill], sdk_wall_s: float) -> list[str]:
    lines = [
        f"Per million updates, USD, AWS us-east-1 list prices taken {PRICES.taken}; Lambda at "
        f"{MEMORY_GB * 1024:.0f} MB, {BATCH} records a batch; the SDK handler's wall "
        f"{sdk_wall_s:.2f} s a batch.",
        "",
        "| design | Lambda requests | Lambda GB-s | SQS standard (FIFO) | DynamoDB writes | DynamoDB reads "
        "| EventBridge | total, standard queue | Portkey requests |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for bill in all_bills:
        sqs = f"{usd(bill.sqs_standard)} ({usd(bill.sqs_fifo)})" if bill.sqs_standard else "—"
        lines.append(
            f"| {bill.design} | {usd(bill.lambda_requests)} | {usd(bill.lambda_gb_s)} | {sqs} "
            f"| {usd(bill.dynamodb_writes)} | {usd(bill.dynamodb_reads)} | {usd(bill.eventbridge)} "
            f"| **{usd(bill.total_standard)}** | {bill.portkey_requests:,.0f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.cost", description=__doc__)
    parser.add_argument("--from", dest="source", type=Path, help="results.json or coalescing.json")
    args = parser.parse_args(argv)
    source = args.source or next(
        (path for path in (OUT / "results.json", OUT / "coalescing.json") if path.is_file()), None
    )
    if source is None:
        parser.error("no bench/out/results.json or coalescing.json: run `make bench` first")
    runs, sdk_wall_s = load(source)
    if not any(run.version == BEFORE for run in runs):
        print("note: no 'before' runs in the results (skipped): only 'after' is priced")
    sdk_wall_s = sdk_wall_s or SDK_WALL_FALLBACK_S
    table = "\n".join(markdown(bills(runs, sdk_wall_s), sdk_wall_s)) + "\n"
    (OUT / "cost.md").write_text(table)
    print(f"{table}wrote {OUT / 'cost.md'} (from {source})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
