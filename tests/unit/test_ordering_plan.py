"""The ordering decision (ordering.plan_group) and the retry delays, without any server."""

from __future__ import annotations

from typing import Any

import pytest

from thread_updater.handback import MAX_VISIBILITY_S, RETRY_CAP_S, busy_delay, transient_delay, wait_delay
from thread_updater.ordering import Candidate, Disposition, GroupPlan, normalised, plan_group
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
    assert plan.dispositions == {0: Disposition.CONTRIBUTES, 1: Disposition.CONTRIBUTES}
    assert plan.won == {0: frozenset({"m:a"}), 1: frozenset({"m:b"})}


def test_under_replace_the_newest_map_wins_whole_and_the_older_is_shadowed() -> None:
    group = [candidate(0, 2, {"metadata": {"a": "2"}}), candidate(1, 1, {"metadata": {"a": "1", "b": "1"}})]
    plan = plan_group({}, group, now=NOW, semantics=REPLACE)
    assert body(plan, REPLACE) == {"metadata": {"a": "2"}}
    assert plan.dispositions == {0: Disposition.CONTRIBUTES, 1: Disposition.SHADOWED}
    assert plan.newer == {1: 2}


def test_an_update_all_of_whose_keys_are_newer_in_the_table_is_superseded_without_a_request() -> None:
    state = {"m:a": SlotState(version=5, value="5"), "m:b": SlotState(version=6, value="6")}
    plan = plan_group(state, [candidate(0, 3, keys(a="3", b="3"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Disposition.SUPERSEDED}
    assert plan.newer == {0: 6}
    assert not plan.request_needed


def test_an_older_update_still_sets_the_keys_nobody_newer_set_and_the_request_carries_the_whole_map() -> None:
    # Given the table holds a@5 and c@1, and v3 sets a and b
    state = {"m:a": SlotState(version=5, value="5"), "m:c": SlotState(version=1, value="1")}

    # When planned
    plan = plan_group(state, [candidate(0, 3, keys(a="3", b="3"))], now=NOW, semantics=MERGE)

    # Then v3 wins b only; the request holds every key at its newest value (right under replace too)
    assert plan.won == {0: frozenset({"m:b"})}
    assert body(plan) == {"metadata": {"a": "5", "b": "3", "c": "1"}}
    assert plan.key_count == 3


def test_a_newer_write_in_doubt_makes_an_older_update_wait_until_its_heal() -> None:
    state = {"m:a": SlotState(version=1, value="1", doubt=7, heal_at_ms=NOW + 5_000)}
    plan = plan_group(state, [candidate(0, 5, keys(a="5"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Disposition.WAITING}
    assert plan.waiting_for == {0: ("m:a", 7)}
    assert plan.wait_until_ms == NOW + 5_000
    assert not plan.request_needed


def test_its_own_earlier_attempt_in_doubt_makes_an_update_wait_then_heal() -> None:
    state = {"m:a": SlotState(version=1, value="1", doubt=3, heal_at_ms=NOW + 60_000)}
    waiting = plan_group(state, [candidate(0, 3, keys(a="3"))], now=NOW, semantics=MERGE)
    assert waiting.dispositions == {0: Disposition.WAITING}
    due = plan_group(state, [candidate(0, 3, keys(a="3"))], now=NOW + 60_000, semantics=MERGE)
    assert due.dispositions == {0: Disposition.CONTRIBUTES}


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
    assert plan.dispositions == {0: Disposition.WAITING}
    assert plan.waiting_for == {0: ("m:a", 4)}


def test_an_update_that_would_take_the_target_past_16_keys_is_refused_and_the_others_go_on() -> None:
    # Given 15 keys held; v2 adds two new keys, v3 only changes a held one
    state = {f"m:k{n}": SlotState(version=1, value="x") for n in range(15)}
    group = [candidate(0, 2, keys(new1="y", new2="y")), candidate(1, 3, keys(k0="z"))]

    # When planned
    plan = plan_group(state, group, now=NOW, semantics=MERGE)

    # Then v2 is over the key limit; v3 is sent with the 15 keys
    assert plan.dispositions == {0: Disposition.OVER_KEY_LIMIT, 1: Disposition.CONTRIBUTES}
    assert len(body(plan)["metadata"]) == 15
    assert body(plan)["metadata"]["k0"] == "z"


def test_sixteen_keys_fit() -> None:
    state = {f"m:k{n}": SlotState(version=1, value="x") for n in range(15)}
    plan = plan_group(state, [candidate(0, 2, keys(k15="y"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Disposition.CONTRIBUTES}
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
    assert plan.dispositions == {0: Disposition.CONTRIBUTES}
    assert plan.request_needed
    assert body(plan) == {}


def test_a_redelivery_of_the_applied_version_is_sent_again() -> None:
    state = {"m:a": SlotState(version=5, value="5")}
    plan = plan_group(state, [candidate(0, 5, keys(a="5"))], now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Disposition.CONTRIBUTES}


@pytest.mark.parametrize("receive_count", [1, 2, 3, 5, 8, 20, 1000])
def test_transient_delay_doubles_per_receive_within_half_and_the_cap(receive_count: int) -> None:
    ceiling = min(RETRY_CAP_S, 2.0 * 2 ** (receive_count - 1))
    for _ in range(50):
        assert ceiling / 2 - 0.1 <= transient_delay(receive_count, None) <= ceiling


def test_transient_delay_is_at_least_the_servers_retry_after() -> None:
    assert transient_delay(1, 30.0) == 30.0
    assert transient_delay(1, 10_000.0) == RETRY_CAP_S


def test_busy_delay_waits_out_the_other_lease_with_jitter() -> None:
    assert 12.0 <= busy_delay(NOW + 12_000, NOW) <= 13.0
    assert 1.0 <= busy_delay(None, NOW) <= 2.0
    assert 1.0 <= busy_delay(NOW - 5_000, NOW) <= 2.0


def test_a_wait_for_a_heal_hours_away_is_one_receive_not_many() -> None:
    # LATE_WRITE_HEAL_DELAY_SECONDS may be 12 h: a waiting update must not burn a receive every 300 s
    assert 3 * 3600 <= wait_delay(NOW + 3 * 3600 * 1000, NOW) <= 3 * 3600 + 1
    assert wait_delay(NOW + 13 * 3600 * 1000, NOW) == MAX_VISIBILITY_S


def test_the_same_update_twice_in_a_batch_is_applied_twice_not_superseded_by_itself() -> None:
    # Given v4 delivered twice in one batch (the body copy and the attribute copy)
    group = [candidate(0, 4, keys(a="4")), candidate(1, 4, keys(a="4"))]

    # When planned, then both contribute and neither names itself as the newer version
    plan = plan_group({}, group, now=NOW, semantics=MERGE)
    assert plan.dispositions == {0: Disposition.CONTRIBUTES, 1: Disposition.CONTRIBUTES}
    assert plan.newer == {}


def test_a_partly_covered_update_names_the_version_that_covers_a_field_not_sent() -> None:
    # Given tool_resources@5 in the table (a field, never carried), and v3 setting a key and it
    state = {"tool_resources": SlotState(version=5, value={"code_interpreter": {"file_ids": []}})}
    update = {"m:a": "3", "tool_resources": {"code_interpreter": {"file_ids": ["f"]}}}

    # When planned, then v3 sends its key only, and names v5 as the newer version of the rest
    plan = plan_group(state, [candidate(0, 3, update)], now=NOW, semantics=MERGE)
    assert plan.won == {0: frozenset({"m:a"})}
    assert body(plan) == {"metadata": {"a": "3"}}
    assert plan.newer == {0: 5}
