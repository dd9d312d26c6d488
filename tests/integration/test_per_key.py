"""Each metadata key's newest version wins (METADATA_SEMANTICS=merge), whether the upstream merges keys
or replaces the whole map; and the newest map wins whole with METADATA_SEMANTICS=replace.

Through the real handler, moto and the Portkey stand-in, run once as a merging upstream (keys left
out stay, OpenAI's observed behaviour) and once as a replacing one: the stand-in's store is what the
thread really holds at the end.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from devstack.lambda_events import sqs_event
from devstack.portkey_standin import PortkeyStandIn
from tests.conftest import AwsResources, FunctionLogs, Invoker

THREAD = "thread_keys"


@pytest.fixture(params=["merge", "replace"])
def portkey(request: pytest.FixtureRequest) -> Iterator[PortkeyStandIn]:
    """The stand-in as a merging and as a replacing upstream (overrides conftest's)."""
    with PortkeyStandIn(metadata_semantics=request.param) as server:
        yield server


def update(version: int, **metadata: str) -> dict[str, Any]:
    return {"thread_id": THREAD, "version": version, "metadata": metadata}


def held(portkey: PortkeyStandIn) -> Any:
    stored = portkey.thread(THREAD)
    return stored["metadata"] if stored else None


def outcomes(logs: FunctionLogs) -> list[dict[str, Any]]:
    return [line for line in logs.lines() if "outcome" in line]


@pytest.mark.usefixtures("state_table")
def test_an_older_update_arriving_last_still_sets_the_keys_no_newer_update_set(
    invoke: Invoker, portkey: PortkeyStandIn, logs: FunctionLogs
) -> None:
    # Given v2 {a:2} applied first
    invoke(sqs_event([update(2, a="2")]))

    # When v1 {a:1, b:1} arrives afterwards
    invoke(sqs_event([update(1, a="1", b="1")]))

    # Then the thread holds a from v2 and b from v1, as in version order; v1 sent only b of its own
    assert held(portkey) == {"a": "2", "b": "1"}
    last = outcomes(logs)[-1]
    assert (last["outcome"], last["sent_fields"], last["newer_version"]) == ("success", ["metadata.b"], 2)


@pytest.mark.usefixtures("state_table")
def test_producers_owning_different_keys_all_keep_their_keys_whatever_the_order(
    invoke: Invoker, portkey: PortkeyStandIn
) -> None:
    # Given three producers (status, owner, priority) whose updates arrive newest first, one per batch
    for body in (update(3, priority="high"), update(2, owner="ana"), update(1, status="open", owner="bob")):
        invoke(sqs_event([body]))

    # Then every key holds its newest value
    assert held(portkey) == {"status": "open", "owner": "ana", "priority": "high"}


def test_without_the_state_table_the_newest_version_per_key_wins_within_a_batch(
    invoke: Invoker, portkey: PortkeyStandIn
) -> None:
    # Given no state table, and v2 {a:2} before v1 {a:1, b:1} in one batch
    invoke(sqs_event([update(2, a="2"), update(1, a="1", b="1")]))

    # Then one request holds the newest value of each key
    assert [request.json for request in portkey.requests] == [{"metadata": {"a": "2", "b": "1"}}]
    assert held(portkey) == {"a": "2", "b": "1"}


@pytest.mark.usefixtures("state_table")
def test_a_seventeenth_key_is_one_dead_letter_naming_the_limit_and_the_sixteen_stay(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    # Given a thread holding 16 keys
    sixteen = {f"k{n}": "x" for n in range(16)}
    invoke(sqs_event([update(1, **sixteen)]))
    sent = len(portkey.requests)

    # When an update adds a 17th key
    response = invoke(sqs_event([update(2, extra="y")]))

    # Then it is dead-lettered once, with a reason naming the limit, before any request
    assert response == {"batchItemFailures": []}
    [letter] = aws.dead_letters()
    assert (letter["category"], letter["attempts"]) == ("rejected", 0)
    assert "more than 16 metadata keys" in letter["error"]
    assert len(portkey.requests) == sent
    assert held(portkey) == sixteen


@pytest.mark.usefixtures("state_table")
def test_metadata_null_cannot_be_merged_and_is_a_validation_letter(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources
) -> None:
    invoke(sqs_event([{"thread_id": THREAD, "metadata": None}]))
    [letter] = aws.dead_letters()
    assert letter["category"] == "validation"
    assert "cannot delete keys" in letter["error"]
    assert portkey.requests == []


@pytest.mark.usefixtures("state_table")
def test_a_null_metadata_among_valid_updates_of_the_same_thread_is_the_only_letter(
    invoke: Invoker, portkey: PortkeyStandIn, aws: AwsResources, logs: FunctionLogs
) -> None:
    # Given one batch for one thread: v1 {a:1}, then a metadata null, then v3 {b:3}
    invoke(
        sqs_event([update(1, a="1"), {"thread_id": THREAD, "version": 2, "metadata": None}, update(3, b="3")])
    )

    # Then the null is dead-lettered alone, the other two go out in one request, every record has
    # exactly one outcome
    [letter] = aws.dead_letters()
    assert "cannot delete keys" in letter["error"]
    assert [line["outcome"] for line in outcomes(logs)] == ["success", "dead_lettered", "success"]
    assert [request.json for request in portkey.requests] == [{"metadata": {"a": "1", "b": "3"}}]


@pytest.mark.usefixtures("state_table")
def test_with_replace_semantics_the_newest_map_wins_whole(
    invoke: Invoker, portkey: PortkeyStandIn, monkeypatch: pytest.MonkeyPatch, logs: FunctionLogs
) -> None:
    # Given METADATA_SEMANTICS=replace and v2 {a:2} applied
    monkeypatch.setenv("METADATA_SEMANTICS", "replace")
    invoke(sqs_event([update(2, a="2")]))

    # When v1 {a:1, b:1} arrives, Then it is superseded whole: nothing sent
    invoke(sqs_event([update(1, a="1", b="1")]))
    assert len(portkey.requests) == 1
    assert outcomes(logs)[-1]["outcome"] == "superseded"
    assert held(portkey) == {"a": "2"}
