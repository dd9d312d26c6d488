"""One soak run: moto resources, the failing stand-in, the producer and the containers, then the books."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.context import ForkServerContext, ForkServerProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.soak.books import Sent, SoakReport, function_log_figures, read_function_logs, settle
from bench.soak.config import LOG_DIR, SECRET, SoakConfig
from bench.soak.convergence import check_convergence
from bench.soak.faults import FaultyStandIn
from bench.soak.traffic import Planned, Producer, planned_bodies, read_queue
from bench.soak.worker import WorkerResult, container
from devstack.local_aws import LocalResources, create_resources, function_environment
from devstack.portkey_standin import Reply

if TYPE_CHECKING:
    from multiprocessing.queues import Queue as MpQueue
    from multiprocessing.synchronize import Event as MpEvent
    from multiprocessing.synchronize import Lock as MpLock
    from multiprocessing.synchronize import Semaphore as MpSemaphore


@contextlib.contextmanager
def _workers(
    context: ForkServerContext,
    count: int,
    target: Callable[..., None],
    args: Callable[[int], tuple[Any, ...]],
) -> Iterator[list[ForkServerProcess]]:
    processes = [context.Process(target=target, args=args(index), daemon=True) for index in range(count)]
    try:
        for process in processes:
            process.start()
        yield processes
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)


def _stop_forkserver() -> None:
    """The fork server would otherwise live on until this process exits. ``_stop`` is the standard
    library's own (test) hook; without it the server still ends with this process."""
    from multiprocessing import forkserver

    stop = getattr(forkserver._forkserver, "_stop", None)
    if callable(stop):
        stop()


@dataclass(frozen=True)
class _Shared:
    """What the parent and the containers share: the receive turn, queue room, stop signals, results."""

    queue_lock: MpLock
    room: MpSemaphore
    producer_done: MpEvent
    stop: MpEvent
    results: MpQueue[WorkerResult]

    @classmethod
    def create(cls, context: ForkServerContext, config: SoakConfig) -> _Shared:
        return cls(
            queue_lock=context.Lock(),
            room=context.Semaphore(config.queue_depth),
            producer_done=context.Event(),
            stop=context.Event(),
            results=context.Queue(),
        )


def run_soak(config: SoakConfig, endpoint: str) -> SoakReport:
    """One soak run against the moto server at ``endpoint`` (``AWS_ENDPOINT_URL`` already set)."""
    started = time.monotonic()
    ends = started + config.max_seconds
    resources = create_resources(
        endpoint,
        SECRET,
        fifo=config.fifo,
        max_receive_count=config.max_receive_count,
        visibility_timeout_s=config.visibility_timeout_s,
        state_table=config.state_table,
    )
    gone = set(config.gone_thread_ids())
    plan = planned_bodies(config)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    log_paths = [LOG_DIR / f"{config.label}-worker{index}.log" for index in range(config.workers)]
    standin = FaultyStandIn(config, metadata_semantics=config.upstream_semantics)
    with standin:
        for thread_id in gone:
            standin.always(
                thread_id,
                Reply(status=404, body={"error": {"message": f"No thread found with id '{thread_id}'."}}),
            )
        env = _function_env(config, resources, standin.url)
        producer, worker_results = _drain(config, resources, env, plan, log_paths, ends)
        drained_at = time.monotonic()
        # Late writes still on their way upstream land before the books read the threads.
        if not standin.wait_for(lambda: standin.in_flight == 0, timeout=config.read_timeout_s + 10):
            raise RuntimeError("the stand-in still has requests in flight after the run")
        letters = read_queue(resources.dlq_url, limit=len(plan))
        sent = Sent(producer.sent, producer.version_attributes, planned=len(plan))
        logs = read_function_logs(log_paths)
        report = settle(config, sent, standin, worker_results, letters, logs)
    report.figures["wall time (s)"] = round(time.monotonic() - started, 1)
    report.figures["time to drain the queue (s)"] = round(drained_at - started, 1)
    report.figures.update(function_log_figures(logs))
    if config.ordering:
        _settle_ordering(report)
    return report


def _settle_ordering(report: SoakReport) -> None:
    """The ordering run's figures and problems: stale threads, and redrives (whose upstream state is
    unknown, so they would make "newest applied" undefined)."""
    convergence = check_convergence(
        bodies=report.sent,
        version_attributes=report.version_attributes,
        buckets=report.buckets,
        final_threads=report.final_threads,
    )
    report.stale = convergence.stale
    report.figures["threads checked for their newest state"] = convergence.threads_checked
    report.figures["stale fields at the end"] = len(convergence.stale)
    report.figures["stale threads at the end"] = len({line.split(":", 1)[0] for line in convergence.stale})
    redriven = [message_id for message_id, bucket in report.buckets.items() if bucket == "redriven"]
    report.problems += [f"{message_id}: redriven in the ordering run" for message_id in redriven]


def _function_env(config: SoakConfig, resources: LocalResources, portkey_url: str) -> dict[str, str]:
    """The function's environment in every container: this run's resources, timeouts and limits."""
    return {
        **{name: value for name, value in os.environ.items() if name.startswith("AWS_")},
        **function_environment(
            resources,
            portkey_url,
            MAX_ATTEMPTS=str(config.max_attempts),
            MAX_CONCURRENCY=str(config.max_concurrency),
            PORTKEY_READ_TIMEOUT=str(config.read_timeout_s),
            PORTKEY_CONNECT_TIMEOUT="1",
            THREAD_LEASE_GRACE_SECONDS=str(config.lease_grace_s),
            LATE_WRITE_HEAL_DELAY_SECONDS=str(config.heal_delay_s),
        ),
    }


def _drain(
    config: SoakConfig,
    resources: LocalResources,
    env: dict[str, str],
    plan: Sequence[Planned],
    log_paths: list[Path],
    ends: float,
) -> tuple[Producer, list[WorkerResult]]:
    """Start the containers, send every planned update, and wait until each container reports."""
    # Workers fork from a server process that imported the function's dependencies once (a fresh
    # interpreter per worker would spend seconds importing boto3 and pydantic on every one).
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["boto3", "botocore", "pydantic", "aws_lambda_powertools", "urllib3"])
    shared = _Shared.create(context, config)
    producer = Producer(config, resources.queue_url, shared.room, shared.queue_lock)
    worker_results: list[WorkerResult] = []

    def args(index: int) -> tuple[Any, ...]:
        return (
            index,
            env,
            config,
            resources.queue_url,
            str(log_paths[index]),
            shared.queue_lock,
            shared.room,
            shared.producer_done,
            shared.stop,
            shared.results,
        )

    try:
        with _workers(context, config.workers, container, args):
            try:
                producer.run(plan, ends)
                shared.producer_done.set()
                for _ in range(config.workers):
                    worker_results.append(shared.results.get(timeout=max(1.0, ends - time.monotonic()) + 30))
            finally:
                shared.stop.set()
    finally:
        _stop_forkserver()
    return producer, worker_results
