"""The ordering decision (ordering.plan_update) and the retry delays, without any server."""

from __future__ import annotations

import pytest

from thread_updater.handback import RETRY_CAP_S, busy_delay, transient_delay
from thread_updater.ordering import plan_update
from thread_updater.state import FieldState, ThreadState

BOTH = frozenset({"metadata", "tool_resources"})
METADATA = frozenset({"metadata"})
NOW = 1_000_000


def state(**fields: FieldState) -> ThreadState:
    return ThreadState(fields=fields)


def test_a_new_thread_sends_every_field() -> None:
    plan = plan_update(state(), version=1, fields=BOTH, now=NOW)
    assert (plan.send, plan.covered, plan.waiting_for, dict(plan.heal)) == (BOTH, {}, {}, {})
    assert not plan.superseded


@pytest.mark.parametrize(("applied", "sent"), [(4, True), (5, True), (6, False)])
def test_a_field_is_sent_unless_a_newer_version_was_applied(applied: int, sent: bool) -> None:
    plan = plan_update(
        state(metadata=FieldState(version=applied, value={})), version=5, fields=METADATA, now=NOW
    )
    assert ("metadata" in plan.send) is sent
    assert plan.superseded is not sent
    assert plan.covered == ({} if sent else {"metadata": 6})


def test_only_the_fields_the_update_is_newest_for_are_sent() -> None:
    current = state(metadata=FieldState(version=9, value={"a": "1"}), tool_resources=FieldState(version=2))
    plan = plan_update(current, version=5, fields=BOTH, now=NOW)
    assert plan.send == {"tool_resources"}
    assert plan.covered == {"metadata": 9}
    assert not plan.superseded


def test_an_older_update_waits_for_a_newer_version_in_doubt() -> None:
    current = state(metadata=FieldState(version=1, value={}, doubt=7, heal_at_ms=NOW + 5_000))
    plan = plan_update(current, version=5, fields=METADATA, now=NOW)
    assert plan.waiting_for == {"metadata": 7}
    assert plan.wait_until_ms == NOW + 5_000
    assert plan.send == frozenset()


@pytest.mark.parametrize("applied", [None, 3, 8])
def test_the_update_in_doubt_itself_waits_until_its_heal_time(applied: int | None) -> None:
    # Given this very update (version 3) was sent with an unknown outcome, healing at NOW + 60 s
    current = state(metadata=FieldState(version=applied, value={}, doubt=3, heal_at_ms=NOW + 60_000))
    plan = plan_update(current, version=3, fields=METADATA, now=NOW)
    # Then its redelivery (an EventBridge retry comes after a minute) waits for the heal time
    assert plan.waiting_for == {"metadata": 3}
    assert plan.wait_until_ms == NOW + 60_000


def test_a_doubt_already_confirmed_does_not_hold_older_updates_back() -> None:
    current = state(metadata=FieldState(version=7, value={}, doubt=7, heal_at_ms=NOW + 5_000))
    plan = plan_update(current, version=5, fields=METADATA, now=NOW)
    assert plan.waiting_for == {}
    assert plan.superseded


def test_a_due_doubt_heals_with_the_newest_confirmed_value() -> None:
    # Given version 3 was in doubt, version 8 was confirmed since, and the heal time has come
    current = state(metadata=FieldState(version=8, value={"v": "8"}, doubt=3, heal_at_ms=NOW - 1))
    plan = plan_update(current, version=3, fields=METADATA, now=NOW)
    assert dict(plan.heal) == {"metadata": (8, {"v": "8"})}
    assert plan.send == frozenset()
    assert not plan.superseded  # a request goes out: the heal


def test_a_doubt_not_yet_due_heals_nothing() -> None:
    current = state(metadata=FieldState(version=8, value={"v": "8"}, doubt=3, heal_at_ms=NOW + 1))
    plan = plan_update(current, version=2, fields=METADATA, now=NOW)
    assert dict(plan.heal) == {}
    assert plan.superseded


def test_a_field_the_update_sends_itself_is_not_healed_again() -> None:
    current = state(metadata=FieldState(version=8, value={"v": "8"}, doubt=3, heal_at_ms=NOW - 1))
    plan = plan_update(current, version=9, fields=METADATA, now=NOW)
    assert plan.send == {"metadata"}
    assert dict(plan.heal) == {}


def test_an_update_without_fields_is_sent_as_it_is() -> None:
    plan = plan_update(
        state(metadata=FieldState(version=9, value={})), version=1, fields=frozenset(), now=NOW
    )
    assert (plan.send, plan.superseded) == (frozenset(), False)


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
