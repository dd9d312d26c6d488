"""The ordering decision (ordering.plan_group) and the retry delays, without any server."""

from __future__ import annotations

from typing import Any

from thread_updater.ordering import (
    Candidate,
    Contributing,
    Covered,
    GroupPlan,
    OverKeyLimit,
    Shadowed,
    Waiting,
    normalised,
    plan_group,
)
from thread_updater.slots import Semantics, SlotState, request_body

NOW = 1_700_000_000_000
MERGE, REPLACE = Semantics.MERGE, Semantics.REPLACE


def keys(**values: str) -> dict[str, Any]:
    return {f"m:{key}": value for key, value in values.items()}


def candidate(index: int, version: int, slots: dict[str, Any]) -> Candidate:
    return Candidate(index=index, version=version, slots=slots)


def body(plan: GroupPlan, semantics: Semantics = MERGE) -> dict[str, Any]:
    return request_body(
        {name: sent.value for name, sent in plan.send.items()}, semantics, metadata_required=False
    )


def test_under_merge_each_key_takes_its_newest_version_whatever_the_arrival_order() -> None:
    # Given v2 {a:2} arriving before v1 {a:1, b:1} in one batch
    group = [candidate(0, 2, keys(a="2")), candidate(1, 1, keys(a="1", b="1"))]

    # When planned against an empty state
    plan = plan_group({}, group, now=NOW, semantics=MERGE)

    # Then one request holds a from v2 and b from v1, and both contribute
    assert body(plan) == {"metadata": {"a": "2", "b": "1"}}
    assert plan.dispositions == {
        0: Contributing(won=frozenset({"m:a"}), newer_version=None),
        1: Contributing(won=frozenset({"m:b"}), newer_version=2),
    }


def test_under_replace_the_newest_map_wins_whole_and_the_older_is_shadowed() -> None:
    group = [candidate(0, 2, {"metadata": {"a": "2"}}), candidate(1, 1, {"metadata": {"a": "1", "b": "1"}})]
    plan = plan_group({}, group, now=NOW, semantics=REPLACE)
    assert body(plan, REPLACE) == {"metadata": {"a": "2"}}
    assert plan.dispositions == {
        0: Contributing(won=frozenset({"metadata"}), newer_version=None),
        1: Shadowed(newer_version=2),
    }


def test_an_update_all_of_whose_keys_are_newer_in_the_table_is_superseded_without_a_request() -> None:
    state = {"m:a": SlotState(version=5, value="5"), "m:b": SlotState(version=6, value="6")}
    plan = plan_group(state, [candidate(0, 3, keys(a="3", b="3"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Covered(newer_version=6)}
    assert not plan.request_needed


def test_an_older_update_still_sets_the_keys_nobody_newer_set_and_the_request_carries_the_whole_map() -> None:
    # Given the table holds a@5 and c@1, and v3 sets a and b
    state = {"m:a": SlotState(version=5, value="5"), "m:c": SlotState(version=1, value="1")}

    # When planned
    plan = plan_group(state, [candidate(0, 3, keys(a="3", b="3"))], now=NOW, semantics=MERGE)

    # Then v3 wins b only; the request holds every key at its newest value (right under replace too)
    assert plan.dispositions == {0: Contributing(won=frozenset({"m:b"}), newer_version=5)}
    assert body(plan) == {"metadata": {"a": "5", "b": "3", "c": "1"}}
    assert plan.key_count == 3


def test_a_newer_write_in_doubt_makes_an_older_update_wait_until_its_heal() -> None:
    state = {"m:a": SlotState(version=1, value="1", doubt=7, heal_at_ms=NOW + 5_000)}
    plan = plan_group(state, [candidate(0, 5, keys(a="5"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Waiting(slot="m:a", version=7, until_ms=NOW + 5_000)}
    assert plan.wait_until_ms == NOW + 5_000
    assert not plan.request_needed


def test_its_own_earlier_attempt_in_doubt_makes_an_update_wait_then_heal() -> None:
    state = {"m:a": SlotState(version=1, value="1", doubt=3, heal_at_ms=NOW + 60_000)}
    waiting = plan_group(state, [candidate(0, 3, keys(a="3"))], now=NOW, semantics=MERGE)
    assert waiting.dispositions == {0: Waiting(slot="m:a", version=3, until_ms=NOW + 60_000)}
    due = plan_group(state, [candidate(0, 3, keys(a="3"))], now=NOW + 60_000, semantics=MERGE)
    assert due.dispositions == {0: Contributing(won=frozenset({"m:a"}), newer_version=None)}


def test_a_confirmed_value_whose_late_write_may_have_overtaken_it_is_sent_again_once_due() -> None:
    # Given tool_resources confirmed at v8 with an earlier v3 attempt in doubt, heal due
    state = {
        "tool_resources": SlotState(version=8, value={"code_interpreter": {}}, doubt=3, heal_at_ms=NOW - 1)
    }

    # When a metadata-only update comes
    plan = plan_group(state, [candidate(0, 9, keys(a="9"))], now=NOW, semantics=MERGE)

    # Then the request heals tool_resources with its newest value; without heals it does not
    assert plan.healed == frozenset({"tool_resources"})
    assert body(plan) == {"metadata": {"a": "9"}, "tool_resources": {"code_interpreter": {}}}
    unhealed = plan_group(state, [candidate(0, 9, keys(a="9"))], now=NOW, semantics=MERGE, heal=False)
    assert body(unhealed) == {"metadata": {"a": "9"}}


def test_a_carried_key_whose_newer_write_is_in_doubt_makes_the_group_wait() -> None:
    # Given key a confirmed at v1 but v4 in doubt; a new update sets only b
    state = {"m:a": SlotState(version=1, value="1", doubt=4, heal_at_ms=NOW + 9_000)}

    # When planned, then the group waits: carrying a at v1 could undo v4's late write
    plan = plan_group(state, [candidate(0, 6, keys(b="6"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Waiting(slot="m:a", version=4, until_ms=NOW + 9_000)}


def test_an_update_that_would_take_the_target_past_16_keys_is_refused_and_the_others_go_on() -> None:
    # Given 15 keys held; v2 adds two new keys, v3 only changes a held one
    state = {f"m:k{n}": SlotState(version=1, value="x") for n in range(15)}
    group = [candidate(0, 2, keys(new1="y", new2="y")), candidate(1, 3, keys(k0="z"))]

    # When planned
    plan = plan_group(state, group, now=NOW, semantics=MERGE)

    # Then v2 is over the key limit; v3 is sent with the 15 keys
    assert plan.dispositions == {
        0: OverKeyLimit(),
        1: Contributing(won=frozenset({"m:k0"}), newer_version=None),
    }
    assert len(body(plan)["metadata"]) == 15
    assert body(plan)["metadata"]["k0"] == "z"


def test_sixteen_keys_fit() -> None:
    state = {f"m:k{n}": SlotState(version=1, value="x") for n in range(15)}
    plan = plan_group(state, [candidate(0, 2, keys(k15="y"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Contributing(won=frozenset({"m:k15"}), newer_version=None)}
    assert plan.key_count == 16


def test_a_whole_map_slot_from_before_per_key_state_reads_as_one_slot_per_key() -> None:
    legacy = {
        "metadata": SlotState(version=4, value={"a": "4", "b": "4"}),
        "m:b": SlotState(version=9, value="9"),
    }
    assert normalised(legacy, MERGE) == {
        "m:a": SlotState(version=4, value="4"),
        "m:b": SlotState(version=9, value="9"),
    }
    assert normalised(legacy, REPLACE) == legacy


def test_an_update_that_sets_nothing_is_still_sent() -> None:
    plan = plan_group({}, [candidate(0, 1, {})], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Contributing(won=frozenset(), newer_version=None)}
    assert plan.request_needed
    assert body(plan) == {}


def test_a_redelivery_of_the_applied_version_is_sent_again() -> None:
    state = {"m:a": SlotState(version=5, value="5")}
    plan = plan_group(state, [candidate(0, 5, keys(a="5"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Contributing(won=frozenset({"m:a"}), newer_version=None)}


def test_the_same_update_twice_in_a_batch_is_applied_twice_not_superseded_by_itself() -> None:
    # Given v4 delivered twice in one batch (the body copy and the attribute copy)
    group = [candidate(0, 4, keys(a="4")), candidate(1, 4, keys(a="4"))]

    # When planned, then both contribute and neither names itself as the newer version
    plan = plan_group({}, group, now=NOW, semantics=MERGE)
    assert plan.dispositions == {
        0: Contributing(won=frozenset({"m:a"}), newer_version=None),
        1: Contributing(won=frozenset({"m:a"}), newer_version=None),
    }


def test_a_partly_covered_update_names_the_version_that_covers_a_field_not_sent() -> None:
    # Given tool_resources@5 in the table (a field, never carried), and v3 setting a key and it
    state = {"tool_resources": SlotState(version=5, value={"code_interpreter": {"file_ids": []}})}
    update = {"m:a": "3", "tool_resources": {"code_interpreter": {"file_ids": ["f"]}}}

    # When planned, then v3 sends its key only, and names v5 as the newer version of the rest
    plan = plan_group(state, [candidate(0, 3, update)], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Contributing(won=frozenset({"m:a"}), newer_version=5)}
    assert body(plan) == {"metadata": {"a": "3"}}
