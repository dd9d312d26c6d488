"""The status codes Portkey and providers really use, and where each leaves the update.

The whole table is in thread_updater/classification.py and docs/contract.md; this file covers the
rows that are not plain "4xx rejected / 5xx transient": account-level answers (402, 412), contention
(409, an active run), a 403 for one thread versus 403 for everything, and how attempts are counted
around a key refresh.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from devstack.lambda_events import eventbridge_event, sqs_event
from devstack.portkey_standin import PortkeyStandIn, Reply
from tests.conftest import VIRTUAL_KEY, AwsResources, FunctionLogs, Invoker, failed_ids
from thread_updater.errors import AccountLimitError


def all_ids(event: dict[str, Any]) -> set[str]:
    return {record["messageId"] for record in event["Records"]}


def emf_totals(stdout: str) -> dict[str, float]:
    totals: dict[str, float] = {}
    for line in stdout.splitlines():
        if line.startswith('{"_aws"'):
            document = json.loads(line)
            for metric in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]:
                value = document[metric["Name"]]
                totals[metric["Name"]] = totals.get(metric["Name"], 0) + (
                    sum(value) if isinstance(value, list) else value
                )
    return totals


# --------------------------------------------------------------------------- account level: 402, 412


@pytest.mark.parametrize(("status", "what_to_fix"), [(412, "raise or reset the limit"), (402, "billing")])
def test_account_level_answers_send_every_record_back_and_say_what_to_fix(
    status: int,
    what_to_fix: str,
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    logs: FunctionLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given Portkey's budget is exhausted (412), or the provider wants payment (402), for every request
    for thread in ("t1", "t2", "t3"):
        portkey.always(thread, Reply(status=status))
    event = sqs_event([{"thread_id": "t1"}, {"thread_id": "t2"}, {"thread_id": "t3"}])

    # When a batch arrives
    response = invoke(event)

    # Then nothing is dead-lettered: every record goes back to the queue
    assert failed_ids(response) == all_ids(event)
    assert aws.dead_letters() == []
    # and one ERROR line says what to fix, and the ConfigurationErrors metric (and its alarm) counts it
    [error] = [line for line in logs.lines() if line["level"] == "ERROR"]
    assert f"HTTP {status}" in error["error"]
    assert what_to_fix in error["error"]
    assert emf_totals(capsys.readouterr().out)["ConfigurationErrors"] == 1


def test_an_account_level_answer_fails_an_eventbridge_invocation_for_lambda_to_retry(
    invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn
) -> None:
    # Given Portkey's budget is exhausted
    portkey.always("t1", Reply(status=412))

    # When an EventBridge event arrives, Then the invocation fails (Lambda retries it), no letter written
    with pytest.raises(AccountLimitError, match="budget or usage limit exhausted"):
        invoke(eventbridge_event({"thread_id": "t1"}))
    assert aws.dead_letters() == []


# --------------------------------------------------------------------------- contention: 409, active run

ACTIVE_RUN = {
    "error": {
        "message": "Can't modify thread thread_busy while a run run_abc is active.",
        "type": "invalid_request_error",
    }
}


@pytest.mark.parametrize(
    "busy", [Reply(status=409), Reply(status=400, body=ACTIVE_RUN)], ids=["409", "active-run"]
)
def test_a_busy_thread_is_retried_with_backoff_and_applied_once_it_is_free(
    busy: Reply, invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn
) -> None:
    # Given the thread is busy for the first request, then free
    portkey.script("thread_busy", busy)
    event = sqs_event([{"thread_id": "thread_busy", "metadata": {"a": "b"}}])

    # When the update is processed, Then it is retried within the invocation and applied, not dead-lettered
    assert invoke(event) == {"batchItemFailures": []}
    assert [request.status for request in portkey.requests] == [busy.status, 200]
    assert aws.dead_letters() == []


@pytest.mark.parametrize(
    "busy", [Reply(status=409), Reply(status=400, body=ACTIVE_RUN)], ids=["409", "active-run"]
)
def test_a_thread_that_stays_busy_is_handed_back_never_dead_lettered(
    busy: Reply, invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given the thread stays busy
    portkey.always("thread_busy", busy)
    event = sqs_event([{"thread_id": "thread_busy"}])

    # When the update is processed
    response = invoke(event)

    # Then it used its attempts (MAX_ATTEMPTS = 3) and went back to the queue
    assert failed_ids(response) == all_ids(event)
    assert len(portkey.requests) == 3
    assert aws.dead_letters() == []
    [line] = [line for line in logs.lines() if line.get("outcome") == "retry"]
    assert line["status"] == busy.status


# --------------------------------------------------------------------------- 403: one thread or everything


def test_a_403_for_one_thread_while_others_succeed_rejects_that_update_only(
    invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given one thread Portkey forbids (say, another project's), and nine it accepts; the forbidden one
    # is last, so by then the same credentials have already been accepted for other threads
    portkey.always("t-forbidden", Reply(status=403))
    threads = [f"t{index}" for index in range(9)] + ["t-forbidden"]
    event = sqs_event([{"thread_id": thread} for thread in threads])

    # When the batch is processed
    response = invoke(event)

    # Then only that update is dead-lettered as rejected; the others are applied; no configuration error
    assert response == {"batchItemFailures": []}
    [letter] = aws.dead_letters()
    assert (letter["thread_id"], letter["category"], letter["status"]) == ("t-forbidden", "rejected", 403)
    assert "forbidden for this update only" in letter["error"]
    assert all(portkey.thread(thread) is not None for thread in threads[:9])
    assert not [line for line in logs.lines() if line["level"] == "ERROR"]


def test_a_403_for_every_request_after_a_refreshed_secret_is_a_configuration_error(
    invoke: Invoker, aws: AwsResources, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given Portkey forbids every request (a key without the permission), even with a fresh secret
    for thread in ("t1", "t2", "t3"):
        portkey.always(thread, Reply(status=403))
    event = sqs_event([{"thread_id": "t1"}, {"thread_id": "t2"}, {"thread_id": "t3"}])

    # When a batch arrives
    response = invoke(event)

    # Then every record goes back to the queue, none is dead-lettered, and the log names the problem
    assert failed_ids(response) == all_ids(event)
    assert aws.dead_letters() == []
    assert "refused the credentials (HTTP 403) after refreshing" in logs.text()


# --------------------------------------------------------------------------- attempts around a key refresh


def test_attempts_count_the_retry_after_a_key_refresh(
    invoke: Invoker,
    aws: AwsResources,
    portkey: PortkeyStandIn,
    logs: FunctionLogs,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Given a warm container, then a rotated key: the next request is refused (401), and the thread is gone
    portkey.set_api_keys({"pk-old"})
    aws.put_secret({"api_key": "pk-old", "virtual_key": VIRTUAL_KEY})
    assert invoke(sqs_event([{"thread_id": "t-warm"}])) == {"batchItemFailures": []}
    capsys.readouterr()
    aws.put_secret({"api_key": "pk-new", "virtual_key": VIRTUAL_KEY})
    portkey.set_api_keys({"pk-new"})
    portkey.script("t-gone", Reply(status=401), Reply(status=404))

    # When two updates arrive: one applied after the refresh, one rejected after it
    response = invoke(sqs_event([{"thread_id": "t-gone"}]))
    assert response == {"batchItemFailures": []}
    applied = invoke(sqs_event([{"thread_id": "t-applied"}]))
    assert applied == {"batchItemFailures": []}

    # Then the letter and the metric count both HTTP requests of the rejected update
    [letter] = aws.dead_letters()
    assert (letter["status"], letter["attempts"]) == (404, 2)
    [rejected] = [line for line in logs.lines() if line.get("thread_id") == "t-gone" and "outcome" in line]
    assert rejected["attempts"] == 2
    totals = emf_totals(capsys.readouterr().out)
    assert totals["HttpAttempts"] == 2 + 1
    assert [request.status for request in portkey.requests_for("t-gone")] == [401, 404]


# --------------------------------------------------------------------------- 408: unknown outcome, like 504

THREAD = "thread_timed_out"
# Long enough for version 2 to be applied before version 1's heal time on a busy 2-core machine
# (tests/integration/test_ordering.py says why).
HEAL_DELAY_S = 4


@pytest.mark.usefixtures("state_table")
@pytest.mark.parametrize("status", [408, 504])
def test_a_gateway_timeout_answer_is_an_unknown_outcome_that_is_healed(
    status: int,
    invoke: Invoker,
    portkey: PortkeyStandIn,
    monkeypatch: pytest.MonkeyPatch,
    logs: FunctionLogs,
) -> None:
    # Given Portkey answers version 1 with a timeout (408: its request_timeout aborted a request it had
    # already forwarded; 504: the provider did not answer in time), one attempt, heals after HEAL_DELAY_S
    monkeypatch.setenv("MAX_ATTEMPTS", "1")
    monkeypatch.setenv("LATE_WRITE_HEAL_DELAY_SECONDS", str(HEAL_DELAY_S))
    portkey.script(THREAD, Reply(status=status))
    first_event = sqs_event([{"thread_id": THREAD, "version": 1, "metadata": {"v": "1"}}])

    # When version 1 is handed back, version 2 is applied, and then the provider writes version 1 after
    # all (a late write; the stand-in cannot write after answering, so the provider's write is seeded)
    first = invoke(first_event)
    handed_back_at = time.monotonic()
    assert invoke(sqs_event([{"thread_id": THREAD, "version": 2, "metadata": {"v": "2"}}])) == {
        "batchItemFailures": []
    }
    portkey.seed(THREAD, metadata={"v": "1"})

    # Then version 1 was handed back as an unknown outcome: with the heal delay, not a backoff step
    assert failed_ids(first) == all_ids(first_event)
    [timed_out] = [line for line in logs.lines() if line.get("version") == 1 and "outcome" in line]
    assert (timed_out["outcome"], timed_out["status"], timed_out["retry_delay_s"]) == (
        "retry",
        status,
        HEAL_DELAY_S,
    )
    # and when it returns after that delay (HEAL_DELAY_S of real time: the bound under test, not
    # synchronisation), the newest state is sent again and the thread converges on version 2
    time.sleep(max(0.0, handed_back_at + HEAL_DELAY_S + 0.05 - time.monotonic()))
    assert invoke(first_event) == {"batchItemFailures": []}
    stored = portkey.thread(THREAD)
    assert stored is not None
    assert stored["metadata"] == {"v": "2"}
    healed = [line for line in logs.lines() if "outcome" in line][-1]
    assert (healed["outcome"], healed["healed"]) == ("superseded", ["metadata.v"])  # the key it healed


@pytest.mark.usefixtures("state_table")
def test_a_refusal_after_an_unknown_attempt_leaves_no_doubt_for_older_updates_to_wait_on(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given version 5 of a thread whose first attempt gets no answer (dropped mid-answer) and whose
    # retry is refused for good (404: the thread is gone, so nothing of it was written)
    thread = "thread_refused_after_doubt"
    portkey.script(thread, Reply(drop="before_response"), Reply(status=404), Reply(status=404))
    newest = sqs_event([{"thread_id": thread, "version": 5, "metadata": {"c": "5"}}])
    assert invoke(newest) == {"batchItemFailures": []}

    # When an older update of it arrives
    older = sqs_event([{"thread_id": thread, "version": 3, "metadata": {"c": "3"}}])
    response = invoke(older)

    # Then version 5 is one rejected letter, and version 3 is sent (and refused in turn) instead of
    # waiting for a heal of version 5 that nothing would ever send
    outcomes = [(line["version"], line["outcome"]) for line in logs.lines() if "outcome" in line]
    assert outcomes == [(5, "dead_lettered"), (3, "dead_lettered")]
    assert response == {"batchItemFailures": []}
    assert [request.status for request in portkey.requests_for(thread)] == [0, 404, 404]
