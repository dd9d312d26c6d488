"""``python -m bench.soak``: a long soak at scale, its figures printed and written to build/."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from bench.soak.books import write_figures
from bench.soak.config import FIGURES_FILE, LOG_DIR, ROOT, SoakConfig, ordering_config
from bench.soak.run import run_soak
from devstack.local_aws import moto_server

DESCRIPTION = (
    "Soak: thousands of updates through moto SQS, the real handler and a Portkey stand-in that fails."
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.soak", description=DESCRIPTION)
    defaults = SoakConfig()
    parser.add_argument("--updates", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=3000)
    parser.add_argument("--gone-threads", type=int, default=defaults.gone_threads)
    parser.add_argument("--fault-rate", type=float, default=defaults.fault_rate)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--workers", type=int, default=defaults.workers)
    parser.add_argument("--fifo", action="store_true", help="a FIFO queue, MessageGroupId = thread_id")
    parser.add_argument("--max-seconds", type=float, default=1800.0)
    parser.add_argument(
        "--ordering",
        action="store_true",
        help="the ordering run: --threads threads with versioned updates, shuffled and duplicated",
    )
    parser.add_argument("--updates-per-thread", type=int, default=defaults.updates_per_thread)
    parser.add_argument("--no-state-table", action="store_true", help="run without THREAD_STATE_TABLE")
    args = parser.parse_args(argv)
    config = _ordering(args) if args.ordering else _volume(args)
    with moto_server() as endpoint:
        report = run_soak(config, endpoint)
    print(report.summary())
    write_figures(report)
    print(f"figures: {FIGURES_FILE.relative_to(ROOT)}; function logs: {LOG_DIR.relative_to(ROOT)}/")
    return 1 if report.problems or report.stale else 0


def _ordering(args: argparse.Namespace) -> SoakConfig:
    return ordering_config(
        threads=args.threads,
        state_table=not args.no_state_table,
        updates_per_thread=args.updates_per_thread,
        updates=args.threads * args.updates_per_thread,
        fault_rate=args.fault_rate,
        seed=args.seed,
        workers=args.workers,
        max_seconds=args.max_seconds,
        label=f"bench-ordering{'-without-state-table' if args.no_state_table else ''}-{args.threads}",
    )


def _volume(args: argparse.Namespace) -> SoakConfig:
    return SoakConfig(
        updates=args.updates,
        threads=args.threads,
        gone_threads=args.gone_threads,
        fault_rate=args.fault_rate,
        seed=args.seed,
        workers=args.workers,
        fifo=args.fifo,
        late_timeout_writes=not args.fifo,
        max_seconds=args.max_seconds,
        state_table=not args.no_state_table,
        label=f"bench-{'fifo' if args.fifo else 'standard'}-{args.updates}",
    )
