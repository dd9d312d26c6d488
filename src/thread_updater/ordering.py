"""Newest update wins, per field, whatever order the updates arrive in (see state.py for the table).

For one update of version ``v`` setting fields ``F``, with the thread claimed in the state table:

* a field whose confirmed version is newer than ``v`` is *covered*: not sent (an update all of whose
  fields are covered is ``superseded``: acknowledged without a request);
* a field sent earlier with a newer version whose outcome is unknown, and not confirmed since, makes
  the update *wait*: it is handed back, so an older value is never sent after a newer one; so does
  the update's own earlier attempt in doubt, until its heal time (then this update heals);
* every other field is sent (an equal version is a redelivery: sent again, which is idempotent);
* a field with an unknown outcome whose heal time has come is *healed*: its newest confirmed value
  is sent again (with the update's own fields, in one request), undoing a late write that may have
  overtaken it.

``plan_update`` is that decision, pure; ``OrderedApplier`` runs it between a claim and a release.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from thread_updater.aws import WORST_CASE_CALL_S
from thread_updater.models import Update
from thread_updater.observability import logger
from thread_updater.portkey import CallOutcome, CallResult, PortkeyClient
from thread_updater.state import Lease, Settlement, StateTable, ThreadBusy, ThreadState, now_ms

__all__ = ["OrderedApplier", "OrderedCall", "Plan", "plan_update"]


@dataclass(frozen=True, kw_only=True)
class Plan:
    send: frozenset[str]  # the update's own fields to send
    heal: Mapping[str, tuple[int, Any]]  # field → (confirmed version, value) to send again
    covered: Mapping[str, int]  # field → the newer confirmed version that covers it
    waiting_for: Mapping[str, int]  # field → the newer version in doubt that must settle first
    wait_until_ms: int | None = None

    @property
    def superseded(self) -> bool:
        return not self.send and not self.heal and not self.waiting_for and bool(self.covered)


def plan_update(state: ThreadState, *, version: int, fields: frozenset[str], now: int) -> Plan:
    """What to send for an update of ``version`` setting ``fields``, given the thread's state."""
    send: set[str] = set()
    covered: dict[str, int] = {}
    waiting: dict[str, int] = {}
    wait_until: list[int] = []
    for name in sorted(fields):
        current = state.field(name)
        heal_pending = current.heal_at_ms is not None and now < current.heal_at_ms
        if current.doubt == version and heal_pending:
            # Our own earlier attempt may still land: come back when its heal is due, so this very
            # update (an EventBridge retry comes after a minute) is what heals the thread.
            waiting[name] = version
            wait_until.append(current.heal_at_ms or now)
        elif current.version is not None and current.version > version:
            covered[name] = current.version
        elif current.doubt is not None and current.doubt > version:
            waiting[name] = current.doubt
            wait_until.append(current.heal_at_ms or now)
        else:
            send.add(name)
    heal = {}
    for name, current in state.fields.items():
        due = current.doubt is not None and current.heal_at_ms is not None and now >= current.heal_at_ms
        confirmed = (
            current.version is not None and current.doubt is not None and current.version >= current.doubt
        )
        if due and confirmed and name not in send and current.version is not None:
            heal[name] = (current.version, current.value)
    return Plan(
        send=frozenset(send),
        heal=heal,
        covered=covered,
        waiting_for=waiting,
        wait_until_ms=max(wait_until) if wait_until else None,
    )


@dataclass(frozen=True, kw_only=True)
class OrderedCall:
    """How an update went through the state table: not sent (busy, waiting, superseded) or the call."""

    call: CallOutcome | None = None
    plan: Plan | None = None
    busy_until_ms: int | None = None
    recorded: bool = True  # False: the call's result could not be written to the table
    notes: list[str] = field(default_factory=list)


class OrderedApplier:
    """Applies updates through Portkey inside a claim on their thread (see the module docstring)."""

    def __init__(
        self, client: PortkeyClient, table: StateTable, *, lease_grace_s: float, heal_delay_s: float
    ) -> None:
        self._client = client
        self._table = table
        self._grace_ms = int(lease_grace_s * 1000)
        self.heal_delay_s = heal_delay_s  # also the retry delay of an update whose outcome is unknown
        self._heal_delay_ms = int(heal_delay_s * 1000)

    def apply(self, update: Update, *, version: int, trace_id: str, deadline: float) -> OrderedCall:
        """Raises StateUnavailableError or ConfigurationError when the table cannot be used."""
        wall_deadline_ms = now_ms() + int((deadline - time.monotonic()) * 1000)
        claim = self._table.claim(
            update.target.state_key, until_ms=wall_deadline_ms + self._grace_ms, deadline=deadline
        )
        if isinstance(claim, ThreadBusy):
            return OrderedCall(busy_until_ms=claim.until_ms)
        try:
            return self._apply_claimed(
                update, version=version, trace_id=trace_id, lease=claim, deadline=deadline
            )
        except BaseException:
            self._release_quietly(claim, deadline)
            raise

    def _apply_claimed(
        self, update: Update, *, version: int, trace_id: str, lease: Lease, deadline: float
    ) -> OrderedCall:
        plan = plan_update(lease.state, version=version, fields=update.fields, now=now_ms())
        if plan.waiting_for or plan.superseded:
            self._table.finish(lease, Settlement(), deadline=deadline)
            return OrderedCall(plan=plan)
        own = update.request_body()
        body = {name: own[name] for name in plan.send}
        body.update({name: value for name, (_, value) in plan.heal.items()})
        call = self._client.modify(
            update.target,
            body,
            trace_id=trace_id,
            deadline=deadline - WORST_CASE_CALL_S,  # leaves the time to record the result
        )
        settlement = self._settlement(plan, call, version=version, own=own, state=lease.state)
        recorded = self._table.finish(lease, settlement, deadline=deadline)
        if not recorded:
            logger.warning(
                "the thread's lease expired before the result was recorded",
                extra={update.target.id_field: update.target.id, "message_id": trace_id},
            )
        return OrderedCall(call=call, plan=plan, recorded=recorded)

    def _settlement(
        self, plan: Plan, call: CallOutcome, *, version: int, own: Mapping[str, Any], state: ThreadState
    ) -> Settlement:
        """What the table must remember of this call (see state.Settlement)."""
        now = now_ms()
        sent = {name: (version, own[name]) for name in plan.send} | dict(plan.heal)
        if call.result is CallResult.REJECTED:
            settled = frozenset(name for name in plan.send if state.field(name).doubt == version)
            return Settlement(cleared_doubts=settled)
        if call.result is CallResult.TRANSIENT and not call.uncertain:
            return Settlement()
        applied = sent if call.result is CallResult.APPLIED else {}
        settled = frozenset(
            name
            for name, (sent_version, _) in applied.items()
            if _doubt_settled_by(state, name, sent_version=sent_version, now=now)
        )
        if not call.uncertain:
            return Settlement(applied=applied, cleared_doubts=settled)
        # Some attempt may still be written later: remember it, and hold the thread for the grace.
        # A heal sent with an unknown outcome is in doubt too: its late write could overtake a newer one.
        doubts = {name: sent_version for name, (sent_version, _) in sent.items()}
        return Settlement(
            applied=applied,
            doubts=doubts,
            heal_at_ms=now + self._heal_delay_ms,
            cleared_doubts=settled,
            hold_until_ms=now + self._grace_ms,
        )

    def _release_quietly(self, lease: Lease, deadline: float) -> None:
        """Best effort on the way out of an error: an unreleased lease still expires by itself."""
        try:
            self._table.finish(lease, Settlement(), deadline=deadline)
        except Exception:  # the error being raised matters more than this one
            logger.debug("could not release a thread's lease", extra={"thread_id": lease.thread_id})


def _doubt_settled_by(state: ThreadState, name: str, *, sent_version: int, now: int) -> bool:
    """A confirmed write settles a doubt once the late write it feared can no longer land after it."""
    current = state.field(name)
    if current.doubt is None:
        return False
    heal_due = current.heal_at_ms is not None and now >= current.heal_at_ms
    return heal_due and sent_version >= current.doubt
