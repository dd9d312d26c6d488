"""Soak: thousands of updates through moto SQS, the real handler and a Portkey that fails ~30 % of
the time; every message id must end in exactly one place. The machinery is ``bench/soak/`` (the
same run scales up with ``python -m bench.soak --updates 20000``); these are its bounded CI runs.

How "exactly once" is settled (``bench.soak.books.settle``):

* **applied** - the function reported the record done (not in ``batchItemFailures``, so the
  poller deleted it) and did not dead-letter it; cross-checked: the stand-in answered a 2xx to a
  request whose ``x-portkey-trace-id`` is that message id (the function sends the messageId);
* **superseded** - reported done like an applied one, without a 2xx of its own, because a newer
  version of every field it sets was already applied (the state table, ``THREAD_STATE_TABLE``, is
  on in every run, as the template deploys it). Cross-checked against the function's outcome line
  (``superseded``, ``newer_version`` above ``version``). In the volume runs the version is the SQS
  ``SentTimestamp``, so an update handed back and redelivered after a newer one of its thread was
  applied is superseded: the one change these runs' assertions needed is counting that place;
* **dead-lettered by the function** - our envelope in the DLQ (category, status, payload);
* **redriven** - the raw body in the DLQ, moved by the redrive policy after ``maxReceiveCount``
  (bodies are unique, so the body names the message).

Each id must be in exactly one of these: none missing, none twice, none acknowledged and also in
the DLQ. One thing "applied" deliberately does not mean: that the stand-in stored the update. A
connection dropped mid-answer, or an answer arriving after the read timeout, stores the update
while the function sees an error and retries it. That write is real and harmless (Modify Thread
replaces, so a retry or a replay from the DLQ writes the same state), so it is counted as its own
figure ("writes upstream without an answer"), not as a second place.

The ordering runs (standard queue, versions 1..5 per thread in the body, shuffled, a fifth sent
twice, late writes) check what the state table is for: at the end every thread holds, per field,
its newest applied update. The same run without the table shows that check failing.

Run with ``-s`` to see the figures; they are also written to ``build/soak-figures.txt``.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from bench.soak import FAULT_WEIGHTS, SoakConfig, SoakReport, run_soak, write_figures
from bench.soak.config import ordering_config


def _publish(report: SoakReport) -> None:
    print()
    print(report.summary())
    write_figures(report)


def _messages_to(report: SoakReport, threads: set[str]) -> set[str]:
    return {
        message_id for message_id, body in report.sent.items() if json.loads(body)["thread_id"] in threads
    }


# Each soak stops itself after its own max_seconds, a bound for a machine busy with other work (on
# an idle 2-core machine the runs drain in a quarter of it); pytest's default 120 s test timeout must
# not cut one short (setup, moto and the stand-in come on top of the run itself).
# Under xdist (`make pytest`) the soaks share one worker, one after another (xdist_group): they
# read-modify-write build/soak-figures.txt, and each run's 8 containers would otherwise compete with
# another soak's 8 for the same two cores. slow: collected first, so the group starts first.
pytestmark = [pytest.mark.timeout(900), pytest.mark.xdist_group("soak"), pytest.mark.slow]


def test_two_thousand_updates_through_injected_faults_each_end_in_exactly_one_place(
    moto_endpoint: str,
) -> None:
    # Given 2,000 updates over 300 threads on a standard queue (redrive after 5 receives), 5 threads
    # that Portkey answers 404 for, and a Portkey that fails ~30 % of the requests in every way it can
    # 480 s: it drains in about 145 s alone and 155-190 s beside the rest of the suite on 4 workers
    config = SoakConfig(updates=2000, threads=300, label="ci-standard", max_seconds=480)

    # When 8 containers drain the queue through the real handler
    report = run_soak(config, moto_endpoint)
    _publish(report)

    # Then the books balance: every message id is applied, superseded or in the DLQ, exactly once
    assert report.problems == []
    assert len(report.sent) == 2000
    assert set(report.buckets) == set(report.sent)
    # the gone threads' updates, and only those, are dead-lettered as rejected 404s
    gone = _messages_to(report, set(config.gone_thread_ids()))
    assert gone
    assert {m for m, bucket in report.buckets.items() if bucket == "rejected"} == gone
    # and the faults really happened: about 30 % of the requests, every kind of them
    figures = report.figures
    assert 0.25 <= figures["fault share of requests"] <= 0.35
    assert set(figures["faults by kind"]) == set(FAULT_WEIGHTS)
    assert figures["http retries inside invocations"] > 0.2 * figures["messages"]
    assert figures["handed back (batchItemFailures)"] > 0
    superseded = figures["superseded (acknowledged without a request of their own)"]
    assert figures["applied"] + superseded + figures["DLQ total"] == 2000


@pytest.mark.parametrize("upstream", ["merge", "replace"])
def test_fifo_updates_through_injected_faults_leave_every_thread_at_its_last_update(
    moto_endpoint: str, upstream: str
) -> None:
    # Given 400 updates over 60 threads on a FIFO queue (MessageGroupId = thread_id) and the same
    # faults, except that a timed-out request is never written upstream afterwards: a write landing
    # after the client gave up could overtake the next update, and Modify Thread has no conditional
    # update a client could use to prevent that (a property of the API, not of this function); an
    # upstream that merges metadata keys, or one that replaces the map
    config = SoakConfig(
        updates=400,
        threads=60,
        fifo=True,
        late_timeout_writes=False,
        upstream_semantics=upstream,
        label=f"ci-fifo-{upstream}",
        max_seconds=300,
    )

    # When 8 containers drain the queue through the real handler
    report = run_soak(config, moto_endpoint)
    _publish(report)

    # Then nothing is lost or duplicated, and each thread's writes arrived in send order
    assert report.problems == []
    assert set(report.buckets) == set(report.sent)
    # and every thread's final metadata is its last update that reached the store: the last one
    # sent, unless that one is in the DLQ (then the last applied one). "Reached the store" is the
    # stand-in's record, not the bucket: with the state table, an update applied by a retry after an
    # attempt in doubt is handed back to heal later, and if that hand-back exhausts its receives
    # it is redriven although its value was stored
    gone = set(config.gone_thread_ids())
    by_thread: dict[str, list[tuple[int, str]]] = {}
    for message_id, body in report.sent.items():
        document: dict[str, Any] = json.loads(body)
        by_thread.setdefault(document["thread_id"], []).append((int(document["metadata"]["seq"]), message_id))
    checked = 0
    for thread_id, updates in by_thread.items():
        if thread_id in gone:
            continue
        stored = [(seq, message_id) for seq, message_id in updates if message_id in report.reached_store]
        _, last = max(stored)
        final = report.final_threads[thread_id]
        assert final is not None
        assert final["metadata"] == json.loads(report.sent[last])["metadata"], thread_id
        _, newest = max(updates)
        if report.buckets[newest] == "applied":
            assert last == newest
            checked += 1
    assert checked >= len(by_thread) - len(gone) - 2  # a redriven last update is rare, not the rule


@pytest.mark.parametrize("upstream", ["merge", "replace"])
def test_ordering_every_thread_ends_at_its_newest_applied_update_per_key(
    moto_endpoint: str, upstream: str
) -> None:
    # Given an upstream that merges metadata keys (or replaces the map), and 60 threads x versions
    # 1..5 (each update sets metadata with some of keys a, b, c, tool_resources, or both), shuffled,
    # a fifth of them sent twice (the copy with its version as the message attribute), and a Portkey
    # failing ~30 % of requests, late writes among them: a timed-out request applied 1.5 s after the
    # client gave up, past the lease's 0.5 s grace, so only the heal (2 s) can undo it
    config = ordering_config(
        threads=60, max_seconds=300, upstream_semantics=upstream, label=f"ordering-{upstream}"
    )

    # When 8 containers drain the queue through the real handler, with the state table
    report = run_soak(config, moto_endpoint)
    _publish(report)

    # Then every message is in exactly one place, and no thread holds anything but its newest
    # applied update, key by key and field by field
    assert report.problems == []
    assert set(report.buckets) == set(report.sent)
    assert report.stale == []
    assert report.figures["stale threads at the end"] == 0
    # and the run went through what ordering is about: duplicates, supersession, late writes, heals
    figures = report.figures
    assert report.version_attributes
    assert figures["superseded (acknowledged without a request of their own)"] > 0
    assert figures["faults by kind"]["read timeout"] > 0
    assert figures["outcome lines with a heal (newest state sent again)"] > 0


def test_ordering_without_the_state_table_leaves_threads_stale(moto_endpoint: str) -> None:
    # Given the same run without THREAD_STATE_TABLE (lanes order updates within a batch only)
    config = ordering_config(threads=60, state_table=False, max_seconds=300)

    # When it drains
    report = run_soak(config, moto_endpoint)
    _publish(report)

    # Then every message is still in exactly one place, but threads end on older updates: the
    # check of the run above fails without the table
    assert report.problems == []
    assert report.figures["stale threads at the end"] > 0
