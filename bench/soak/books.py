"""The books: where every message id ended up, and everything that contradicts "exactly once".

A message id is in exactly one of four places:

* **applied** - the function reported the record done (not in ``batchItemFailures``, so the poller
  deleted it) and did not dead-letter it; cross-checked: the stand-in answered a 2xx to a request
  whose ``x-portkey-trace-id`` is that message id;
* **superseded** - reported done like an applied one, but without a 2xx of its own: every field it
  sets was already covered by a newer version in the state table. Cross-checked: the function's
  outcome line for it says ``superseded`` with a ``newer_version`` above its ``version``;
* **rejected** - our envelope in the DLQ (category, status, payload): dead-lettered by the function;
* **redriven** - the raw body in the DLQ, moved by the redrive policy after ``maxReceiveCount``.
"""

from __future__ import annotations

import collections
import contextlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.soak.config import FIGURES_FILE, SoakConfig
from bench.soak.faults import FaultyStandIn, update_key
from bench.soak.worker import WorkerResult
from devstack.portkey_standin import TRACE_ID_HEADER


@dataclass
class SoakReport:
    config: SoakConfig
    figures: dict[str, Any]
    problems: list[str]
    buckets: dict[str, str]  # message id -> applied | superseded | rejected | redriven
    sent: dict[str, str]  # message id -> body
    final_threads: dict[str, dict[str, Any] | None]
    # message ids the stand-in stored although the function saw no answer (it retried them)
    written_without_answer: set[str]
    reached_store: set[str]  # message ids the stand-in stored, with or without an answer
    version_attributes: dict[str, int] = field(default_factory=dict)  # message id -> ``version`` attribute
    # the ordering run: one line per field that does not hold its thread's newest applied update
    stale: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"[{self.config.label}]"]
        for name, value in self.figures.items():
            lines.append(f"  {name}: {value}")
        lines.append(f"  problems: {len(self.problems)}")
        lines += [f"    - {problem}" for problem in self.problems[:20]]
        if self.stale:
            lines.append(f"  stale fields: {len(self.stale)}")
            lines += [f"    - {line}" for line in self.stale[:20]]
        return "\n".join(lines)


@dataclass(frozen=True)
class Sent:
    """What the producer sent: message id -> body, and the ``version`` attributes it set."""

    bodies: dict[str, str]
    version_attributes: dict[str, int]
    planned: int


def settle(
    config: SoakConfig,
    sent: Sent,
    standin: FaultyStandIn,
    worker_results: Sequence[WorkerResult],
    letters: Sequence[str],
    outcome_lines: Sequence[Mapping[str, Any]],
) -> SoakReport:
    """The books: where every message id ended up, and everything that contradicts "exactly once"."""
    gone = set(config.gone_thread_ids())
    by_body = {body: message_id for message_id, body in sent.bodies.items()}
    thread_of = {message_id: json.loads(body)["thread_id"] for message_id, body in sent.bodies.items()}
    seq_of = {message_id: int(update_key(json.loads(body)) or 0) for message_id, body in sent.bodies.items()}
    problems = _run_problems(config, sent, worker_results)
    acknowledged, handler_errors = _acknowledged(worker_results)
    problems += [f"handler raised: {error}" for error in handler_errors[:5]]
    envelopes, redriven, dlq_problems = _dlq_contents(letters, by_body)
    problems += dlq_problems
    ledger = _Ledger(
        config=config,
        acknowledged=acknowledged,
        envelopes=envelopes,
        redriven=redriven,
        answered_2xx=_answered_2xx(standin),
        receives=_receives(worker_results),
        superseded={
            str(line["message_id"]): line for line in outcome_lines if line.get("outcome") == "superseded"
        },
        carried_by=_carriers(outcome_lines),
    )
    buckets: dict[str, str] = {}
    for message_id, body in sent.bodies.items():
        bucket, found = ledger.place(message_id, body, to_gone_thread=thread_of[message_id] in gone)
        problems += found
        if bucket is not None:
            buckets[message_id] = bucket
    final_threads = {thread_id: standin.thread(thread_id) for thread_id in config.thread_ids()}
    if config.fifo:
        problems += fifo_problems(
            config, sent.bodies, buckets, standin, final_threads, thread_of, seq_of, gone
        )
    figures = _figures(config, sent.bodies, buckets, standin, worker_results, ledger.receives, gone)
    return SoakReport(
        config,
        figures,
        problems,
        buckets,
        sent.bodies,
        final_threads,
        set(standin.silent_writes),
        reached_store(standin),
        sent.version_attributes,
    )


def _longest_hold(worker_results: Sequence[WorkerResult]) -> float:
    return max((result.longest_hold_s for result in worker_results), default=0.0)


def _run_problems(config: SoakConfig, sent: Sent, worker_results: Sequence[WorkerResult]) -> list[str]:
    """What voids the run as a whole: updates not sent, a batch held too long, a worker that failed."""
    problems = []
    if len(sent.bodies) != sent.planned:
        problems.append(f"sent {len(sent.bodies)} of {sent.planned} updates")
    longest_hold = _longest_hold(worker_results)
    if longest_hold >= config.visibility_timeout_s:
        # Another container may then have received the same message: at-least-once delivery that
        # the deployment avoids with VisibilityTimeout >= 6 x the function timeout. The run is void.
        problems.append(
            f"a batch was held {longest_hold:.1f} s, longer than the visibility timeout "
            f"({config.visibility_timeout_s} s): the machine is too loaded for this run"
        )
    for result in worker_results:
        if result.error:
            problems.append(f"worker {result.index} failed: {result.error}")
        if result.timed_out:
            problems.append(f"worker {result.index} stopped at the time bound with messages left")
    return problems


def _acknowledged(worker_results: Sequence[WorkerResult]) -> tuple[collections.Counter[str], list[str]]:
    """How often the function reported each record as done (so the poller deleted it), and the
    errors its invocations raised. Done is "applied" (Portkey answered 2xx), "superseded" (a newer
    version covers every field) or "dead-lettered by the function" (an envelope)."""
    acknowledged = collections.Counter[str]()
    handler_errors = []
    for result in worker_results:
        for invocation in result.invocations:
            if invocation.error:
                handler_errors.append(invocation.error)
            acknowledged.update(set(invocation.records) - set(invocation.failed))
    return acknowledged, handler_errors


def _dlq_contents(
    letters: Sequence[str], by_body: Mapping[str, str]
) -> tuple[dict[str, list[dict[str, Any]]], collections.Counter[str], list[str]]:
    """The DLQ's messages: our envelopes by message id, redriven raw bodies, and anything else."""
    envelopes: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    redriven = collections.Counter[str]()
    problems = []
    for text in letters:
        document: Any = None
        with contextlib.suppress(ValueError):
            document = json.loads(text)
        if isinstance(document, dict) and "category" in document and "payload" in document:
            envelopes[str(document.get("message_id"))].append(document)
        elif text in by_body:  # the raw body, moved by the redrive policy after maxReceiveCount
            redriven[by_body[text]] += 1
        else:
            problems.append(f"unexpected DLQ message: {text[:120]}")
    return envelopes, redriven, problems


def reached_store(standin: FaultyStandIn) -> set[str]:
    """Message ids whose update the stand-in stored: answered 2xx (an update applied by a retry
    whose earlier attempt is in doubt is then handed back, and may even be redriven later), or
    written without an answer (mid-answer drops, late timeouts)."""
    return {trace_id for trace_id, count in _answered_2xx(standin).items() if count} | {
        trace_id for trace_id, count in standin.silent_writes.items() if count
    }


def _answered_2xx(standin: FaultyStandIn) -> collections.Counter[str]:
    """2xx answers by trace id (the function sends the message id as the trace id)."""
    answered = collections.Counter[str]()
    for request in standin.requests:
        if 200 <= request.status < 300:
            answered[request.headers.get(TRACE_ID_HEADER, "")] += 1
    return answered


def _carriers(outcome_lines: Sequence[Mapping[str, Any]]) -> dict[str, frozenset[str]]:
    """Message id -> the trace ids of the requests that applied it: the function sends a thread's
    updates of one batch in one request, traced by the newest one's message id."""
    carriers: dict[str, set[str]] = collections.defaultdict(set)
    for line in outcome_lines:
        if line.get("outcome") == "success" and isinstance(line.get("portkey_trace_id"), str):
            carriers[str(line["message_id"])].add(line["portkey_trace_id"])
    return {message_id: frozenset(traces) for message_id, traces in carriers.items()}


def _receives(worker_results: Sequence[WorkerResult]) -> collections.Counter[str]:
    """How often each message was received, over all containers."""
    receives = collections.Counter[str]()
    for result in worker_results:
        receives.update(result.receives_by_message)
    return receives


@dataclass(frozen=True)
class _Ledger:
    """Every sighting of every message id: acknowledged, in the DLQ, answered upstream, received."""

    config: SoakConfig
    acknowledged: collections.Counter[str]
    envelopes: Mapping[str, list[dict[str, Any]]]
    redriven: collections.Counter[str]
    answered_2xx: collections.Counter[str]
    receives: collections.Counter[str]
    superseded: Mapping[str, Mapping[str, Any]]  # message id -> its "superseded" outcome line
    carried_by: Mapping[str, frozenset[str]]  # message id -> trace ids of the requests that applied it

    def place(self, message_id: str, body: str, *, to_gone_thread: bool) -> tuple[str | None, list[str]]:
        """The one place this message id ended up (None if not exactly one), and what contradicts it."""
        acks, letters, raws = (
            self.acknowledged[message_id],
            self.envelopes.get(message_id, []),
            self.redriven[message_id],
        )
        places = (1 if acks and not letters else 0) + len(letters) + raws
        problems = []
        if acks > 1:
            problems.append(f"{message_id}: acknowledged {acks} times")
        if places != 1:
            problems.append(
                f"{message_id}: in {places} places (acknowledged={acks}, envelopes={len(letters)}, "
                f"redriven={raws})"
            )
            return None, problems
        if letters:
            return "rejected", problems + self._rejected_problems(
                message_id, body, to_gone_thread=to_gone_thread
            )
        if raws:
            return "redriven", problems + self._redriven_problems(message_id)
        if message_id in self.superseded:
            found = self._superseded_problems(message_id, to_gone_thread=to_gone_thread)
            return "superseded", problems + found
        return "applied", problems + self._applied_problems(message_id, to_gone_thread=to_gone_thread)

    def _rejected_problems(self, message_id: str, body: str, *, to_gone_thread: bool) -> list[str]:
        [letter] = self.envelopes[message_id]
        problems = []
        if not self.acknowledged[message_id]:
            problems.append(f"{message_id}: dead-lettered but handed back too")
        if not to_gone_thread:
            problems.append(f"{message_id}: dead-lettered although its thread exists: {letter['error']}")
        if (letter["category"], letter["status"], letter["payload"]) != ("rejected", 404, body):
            problems.append(f"{message_id}: unexpected envelope {letter}")
        return problems

    def _redriven_problems(self, message_id: str) -> list[str]:
        receives = self.receives[message_id]
        if receives < self.config.max_receive_count:
            return [f"{message_id}: redriven after only {receives} receives"]
        return []

    def _superseded_problems(self, message_id: str, *, to_gone_thread: bool) -> list[str]:
        line = self.superseded[message_id]
        version, newer = line.get("version"), line.get("newer_version")
        problems = []
        if not (isinstance(version, int) and isinstance(newer, int) and newer > version):
            problems.append(f"{message_id}: superseded by version {newer}, not newer than its own {version}")
        if to_gone_thread:
            problems.append(f"{message_id}: superseded on a thread that always answers 404")
        return problems

    def _applied_problems(self, message_id: str, *, to_gone_thread: bool) -> list[str]:
        problems = []
        traces = self.carried_by.get(message_id, frozenset()) | {message_id}
        if not any(self.answered_2xx[trace_id] for trace_id in traces):
            problems.append(f"{message_id}: acknowledged as applied, but Portkey never answered 2xx")
        if to_gone_thread:
            problems.append(f"{message_id}: applied to a thread that always answers 404")
        return problems


def _figures(
    config: SoakConfig,
    sent: Mapping[str, str],
    buckets: Mapping[str, str],
    standin: FaultyStandIn,
    worker_results: Sequence[WorkerResult],
    receives: collections.Counter[str],
    gone: set[str],
) -> dict[str, Any]:
    """The run's figures, in the order the summary prints them."""
    receive_counts = [receives[message_id] for message_id in sent]
    counts = collections.Counter(buckets.values())
    faults = sum(standin.faults.values())
    return {
        "queue": "FIFO" if config.fifo else "standard",
        "messages": len(sent),
        "threads": config.threads,
        "threads that always 404": len(gone),
        "worker processes (containers)": config.workers,
        "invocations": sum(len(result.invocations) for result in worker_results),
        "longest receive-to-delete (s)": round(_longest_hold(worker_results), 2),
        "HTTP requests": len(standin.requests),
        "faults injected": faults,
        "fault share of requests": round(faults / max(1, len(standin.requests)), 3),
        "faults by kind": dict(sorted(standin.faults.items())),
        "writes upstream without an answer (mid-answer drops, late timeouts)": sum(
            standin.silent_writes.values()
        ),
        "handed back (batchItemFailures)": sum(result.handed_back for result in worker_results),
        "redeliveries (receives beyond the first)": sum(max(0, count - 1) for count in receive_counts),
        "applied": counts["applied"],
        "superseded (acknowledged without a request of their own)": counts["superseded"],
        "DLQ: rejected 404 envelopes": counts["rejected"],
        "DLQ: redriven raw bodies": counts["redriven"],
        "DLQ total": counts["rejected"] + counts["redriven"],
        "missing": len(sent) - len(buckets),
    }


def fifo_problems(
    config: SoakConfig,
    sent: Mapping[str, str],
    buckets: Mapping[str, str],
    standin: FaultyStandIn,
    final_threads: Mapping[str, dict[str, Any] | None],
    thread_of: Mapping[str, str],
    seq_of: Mapping[str, int],
    gone: set[str],
) -> list[str]:
    """Per thread: writes arrive in send order, and the final state is the last update written.

    A write is judged by what it carries (its ``seq``), not by its trace id: a heal sends the newest
    known state again, traced by the newest update of the batch that carried it, which may be older
    than the state it restores.
    """
    problems = []
    stored = reached_store(standin)  # message ids
    written: dict[str, list[int]] = collections.defaultdict(list)  # thread -> seqs of 2xx writes
    for request in standin.requests:
        trace_id = request.headers.get(TRACE_ID_HEADER, "")
        carried = update_key(request.json)
        if 200 <= request.status < 300 and trace_id in seq_of and carried is not None:
            written[thread_of[trace_id]].append(int(carried))
    for thread_id, seqs in written.items():
        if seqs != sorted(seqs):
            problems.append(f"{thread_id}: writes out of send order: {seqs}")
    for thread_id in config.thread_ids():
        if thread_id in gone:
            continue
        ids = [message_id for message_id in sent if thread_of[message_id] == thread_id]
        reached = [m for m in ids if m in stored]
        if not reached:
            continue
        last = max(reached, key=lambda message_id: seq_of[message_id])
        expected = json.loads(sent[last])["metadata"]
        final = final_threads.get(thread_id)
        actual = final["metadata"] if final else None
        if actual != expected:
            problems.append(f"{thread_id}: final metadata {actual} != last written update {expected}")
    return problems


def read_function_logs(paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Every JSON object the function wrote (log lines and EMF metrics), container by container."""
    documents = []
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                document = json.loads(line)
                if isinstance(document, dict):
                    documents.append(document)
    return documents


def function_log_figures(documents: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    """Retries inside invocations, outcomes, heals and Retry-After waits, from the function's own
    logs and metrics."""
    figures = collections.Counter[str]()
    for document in documents:
        attempts = document.get("attempts")
        if isinstance(attempts, int) and str(document.get("message", "")).startswith("update "):
            figures["http retries inside invocations"] += max(0, attempts - 1)
            figures[f"outcome lines: {document['message']}"] += 1
            if document.get("healed"):
                figures["outcome lines with a heal (newest state sent again)"] += 1
        waits = document.get("RetryAfterWaits")
        if isinstance(waits, list):
            figures["Retry-After waits (EMF)"] += int(sum(waits))
    return dict(figures)


def write_figures(report: SoakReport, path: Path = FIGURES_FILE) -> None:
    """Replace this run's section of the figures file (one section per label)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sections: dict[str, str] = {}
    if path.exists():
        current: str | None = None
        for line in path.read_text().splitlines():
            if line.startswith("[") and line.endswith("]"):
                current = line[1:-1]
                sections[current] = ""
            elif current is not None:
                sections[current] += line + "\n"
    text = report.summary()
    sections[report.config.label] = text.split("\n", 1)[1] + "\n"
    path.write_text("".join(f"[{label}]\n{body}" for label, body in sections.items()))
