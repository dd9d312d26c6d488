"""UpdateProcessor's lanes and outcomes without sockets: a scripted pool stands in for the network."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from devstack.lambda_events import sqs_record
from tests.unit.fakes import FakePool, FixedCredentials
from thread_updater.applier import GroupApplier
from thread_updater.deadletter import DeadLetterQueue
from thread_updater.deadline import Deadline
from thread_updater.jobs import Job, sqs_job
from thread_updater.outcomes import Result
from thread_updater.portkey import CallLimits, PortkeyClient
from thread_updater.processing import UpdateProcessor, WorkerPool
from thread_updater.slots import Semantics

NO_WAIT = {"Retry-After": "0"}


@pytest.fixture
def pool() -> FakePool:
    return FakePool()


@pytest.fixture
def processor(pool: FakePool) -> UpdateProcessor:
    limits = CallLimits(max_attempts=1, connect_timeout_s=1.0, read_timeout_s=1.0)
    client = PortkeyClient("https://portkey.example/v1", pool, FixedCredentials(), limits=limits)  # type: ignore[arg-type]
    executor = ThreadPoolExecutor(max_workers=4)
    # The DLQ is never reached here: no update in these tests is invalid or rejected.
    dead_letters = DeadLetterQueue("https://sqs.invalid/000000000000/unused")
    applier = GroupApplier(client, None, semantics=Semantics.MERGE, lease_grace_s=10.0, heal_delay_s=120.0)
    return UpdateProcessor(applier, dead_letters, WorkerPool(executor=executor, workers=4))


def jobs(*bodies: dict[str, Any]) -> list[Job]:
    return [sqs_job(sqs_record(json.dumps(body))) for body in bodies]


def test_one_request_per_thread_and_a_failed_one_hands_back_only_that_threads_updates(
    processor: UpdateProcessor, pool: FakePool
) -> None:
    # Given thread a's request fails transiently, and thread b is healthy
    pool.answer("/threads/a", (503, {}, NO_WAIT))
    batch = jobs(
        {"thread_id": "a", "version": 1, "metadata": {"x": "1"}},
        {"thread_id": "b"},
        {"thread_id": "a", "version": 2, "metadata": {"y": "2"}},
    )

    # When the batch runs
    outcomes = processor.process_batch(batch, Deadline.after(30))

    # Then a's two updates went out in one request and both come back; b is applied
    assert [outcome.result for outcome in outcomes] == [Result.RETRY, Result.SUCCESS, Result.RETRY]
    sent_to_a = [request for request in pool.requests if request["url"].endswith("/threads/a")]
    assert len(sent_to_a) == 1
    assert sent_to_a[0]["json"] == {"metadata": {"x": "1", "y": "2"}}


def test_a_configuration_error_stops_every_lane(processor: UpdateProcessor, pool: FakePool) -> None:
    # Given the upstream refuses the credentials even after a refresh
    pool.default = (401, {"error": {"message": "Incorrect API key provided."}}, {})
    batch = jobs(*({"thread_id": f"t{index}"} for index in range(6)))

    # When the batch runs, then nothing is applied and every record goes back
    outcomes = processor.process_batch(batch, Deadline.after(30))
    assert {outcome.result for outcome in outcomes} == {Result.RETRY}
    assert all("configuration error" in (outcome.error or "") for outcome in outcomes)


def test_every_job_gets_exactly_one_outcome_in_batch_order(processor: UpdateProcessor) -> None:
    batch = jobs(*({"thread_id": f"t{index % 5}", "version": index + 1} for index in range(40)))
    outcomes = processor.process_batch(batch, Deadline.after(30))
    assert [outcome.message_id for outcome in outcomes] == [job.message_id for job in batch]
    assert all(outcome.result is Result.SUCCESS for outcome in outcomes)
    assert [outcome.version for outcome in outcomes] == list(range(1, 41))


def test_a_hand_back_carries_its_own_retry_delay(processor: UpdateProcessor, pool: FakePool) -> None:
    # A Retry-After that does not fit the invocation (one that fits is waited out within it)
    pool.answer("/threads/a", (429, {}, {"Retry-After": "7"}))
    [outcome] = processor.process_batch(jobs({"thread_id": "a"}), Deadline.after(5))
    assert outcome.result is Result.RETRY
    assert outcome.retry_delay_s == 7.0
