"""Newest version wins, per slot, whatever order updates arrive in: one request per target per batch.

``plan_group`` takes the updates of one thread or conversation from one batch (the *candidates*) and
what the state table knows of it (slots.py), and decides, purely, what one request must send and
what becomes of each candidate:

* a candidate one of whose slots has a newer version in doubt (sent, outcome unknown, not confirmed
  since) *waits*: it is handed back, so an older value is never sent after a newer one; so does a
  candidate whose own earlier attempt is in doubt, until its heal time (then it heals);
* for every other slot the newest candidate setting it *wins* it, unless the state table holds a
  newer confirmed version (an equal version is a redelivery: sent again, which is idempotent);
* a candidate that wins a slot *contributes* to the request; one that wins none is *superseded*,
  at once when confirmed versions cover it, or once the request that carries its newer rivals is
  applied (*shadowed*);
* under merge, a contributing candidate that would make the target hold more than 16 metadata keys
  is *over the key limit* (a dead letter, before any request);
* a slot whose doubt's heal time has come is *healed*: its newest confirmed value is sent again,
  undoing a late write that may have overtaken it; under merge every confirmed key is sent anyway
  (*carried*), so the upstream holds the whole desired map whether it merges or replaces.

``GroupApplier`` (applier.py) runs the plan between a claim and a release.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from thread_updater.slots import (
    KEY_PREFIX,
    MAX_METADATA_KEYS,
    METADATA,
    Semantics,
    SlotState,
    metadata_keys,
)

__all__ = [
    "Candidate",
    "Contributing",
    "Covered",
    "Disposition",
    "GroupPlan",
    "OverKeyLimit",
    "Sent",
    "Shadowed",
    "Waiting",
    "normalised",
    "plan_group",
]


@dataclass(frozen=True, kw_only=True)
class Candidate:
    """One update of the group: its position in the batch, its version and the slots it sets."""

    index: int
    version: int
    slots: Mapping[str, Any]


@dataclass(frozen=True, kw_only=True)
class Waiting:
    """Handed back: ``slot`` has ``version`` in doubt; worth coming back at ``until_ms``."""

    slot: str
    version: int
    until_ms: int


@dataclass(frozen=True, kw_only=True)
class Covered:
    """Superseded by confirmed versions: acknowledged without a request."""

    newer_version: int


@dataclass(frozen=True, kw_only=True)
class Contributing:
    """Wins ``won`` (possibly nothing, for an update that sets nothing) in the request; its other
    slots are covered by ``newer_version``."""

    won: frozenset[str]
    newer_version: int | None


@dataclass(frozen=True, kw_only=True)
class Shadowed:
    """Every slot is won by newer candidates: superseded once the request that carries them applies."""

    newer_version: int


@dataclass(frozen=True, kw_only=True)
class OverKeyLimit:
    """Would take the target past 16 metadata keys: a dead letter, before any request."""


Disposition = Waiting | Covered | Contributing | Shadowed | OverKeyLimit
"""What becomes of one candidate: one of these, never a combination of optional fields."""
_D = TypeVar("_D", Waiting, Covered, Contributing, Shadowed, OverKeyLimit)


@dataclass(frozen=True, kw_only=True)
class Sent:
    """A slot in the request: the version whose value it carries."""

    version: int
    value: Any


@dataclass(frozen=True, kw_only=True)
class GroupPlan:
    dispositions: Mapping[int, Disposition]  # candidate index → what becomes of it
    send: Mapping[str, Sent]  # every slot of the request, with the version it carries
    healed: frozenset[str]  # slots sent again after a possible late write
    key_count: int  # metadata keys the target holds once the request is applied (merge)

    @property
    def request_needed(self) -> bool:
        return bool(self.of(Contributing)) or bool(self.healed)

    @property
    def wait_until_ms(self) -> int | None:
        """When the earliest wait is worth retrying; None when nothing waits."""
        return min((waiting.until_ms for waiting in self.of(Waiting).values()), default=None)

    def of(self, kind: type[_D]) -> dict[int, _D]:
        """The candidates (index → disposition) with dispositions of this kind, in batch order."""
        return {index: seen for index, seen in self.dispositions.items() if isinstance(seen, kind)}


def normalised(slots: Mapping[str, SlotState], semantics: Semantics) -> dict[str, SlotState]:
    """The slots as ``semantics`` reads them: under merge a whole-map ``metadata`` slot (written under
    replace, or by a release before per-key state) becomes one slot per key it holds, at its version;
    a newer per-key slot stays."""
    result = dict(slots)
    whole = result.get(METADATA)
    if semantics is not Semantics.MERGE or whole is None:
        return result
    del result[METADATA]
    if whole.version is not None and isinstance(whole.value, Mapping):
        for key, value in whole.value.items():
            name = KEY_PREFIX + key
            current = result.get(name)
            if current is None or current.version is None or current.version < whole.version:
                result[name] = SlotState(
                    version=whole.version, value=value, doubt=whole.doubt, heal_at_ms=whole.heal_at_ms
                )
    return result


def plan_group(
    slots: Mapping[str, SlotState],
    candidates: Sequence[Candidate],
    *,
    now: int,
    semantics: Semantics,
    heal: bool = True,
) -> GroupPlan:
    """What one request for this group sends, and what becomes of each candidate (module docstring).

    ``slots`` must be ``normalised`` for ``semantics``. ``heal=False`` sends no heals (the isolation
    retry after a rejected request: a heal must not take innocent updates with it).
    """
    dispositions: dict[int, Disposition] = {}
    for candidate in candidates:
        wait = _wait(slots, candidate, now)
        if wait is not None:
            dispositions[candidate.index] = wait
    active = [candidate for candidate in candidates if candidate.index not in dispositions]
    confirmed_keys = frozenset(name for name in metadata_keys(slots) if slots[name].version is not None)
    while True:
        winners = _winners(slots, active)
        over = _over_key_limit(confirmed_keys, active, winners) if semantics is Semantics.MERGE else None
        if over is None:
            break
        dispositions[over.index] = OverKeyLimit()
        active = [candidate for candidate in active if candidate is not over]
    blocking = _carry_in_doubt(slots, winners, now) if semantics is Semantics.MERGE and active else None
    if blocking is not None:
        # The whole map is sent under merge: a key whose newer write is in doubt cannot be carried at
        # its older confirmed value (it might undo the late write), so the group waits for the heal.
        for candidate in active:
            dispositions[candidate.index] = blocking
        active, winners = [], {}
    dispositions |= _contributions(slots, active, winners)
    contributing = any(isinstance(seen, Contributing) for seen in dispositions.values())
    send = {name: Sent(version=winner.version, value=winner.slots[name]) for name, winner in winners.items()}
    healed: set[str] = set()
    for name, state in slots.items():
        if name in send or state.version is None:
            continue
        due = state.doubt is not None and state.heal_at_ms is not None and now >= state.heal_at_ms
        if heal and due and state.version >= (state.doubt or 0):
            healed.add(name)
            send[name] = Sent(version=state.version, value=state.value)
        elif semantics is Semantics.MERGE and name.startswith(KEY_PREFIX) and (contributing or healed):
            send[name] = Sent(version=state.version, value=state.value)  # carried: the whole map
    if not contributing and not healed:
        send = {}
    key_count = len(confirmed_keys | metadata_keys(send))
    return GroupPlan(dispositions=dispositions, send=send, healed=frozenset(healed), key_count=key_count)


def _contributions(
    slots: Mapping[str, SlotState], active: Sequence[Candidate], winners: Mapping[str, Candidate]
) -> dict[int, Contributing | Covered | Shadowed]:
    """Each active candidate: the slots it wins and the version covering what it does not, or the
    version that supersedes it (already confirmed, or carried by the request)."""
    dispositions: dict[int, Contributing | Covered | Shadowed] = {}
    for candidate in active:
        # A slot won by an equal version (the same update delivered twice) counts as its own too.
        mine = frozenset(
            name
            for name, winner in winners.items()
            if name in candidate.slots and winner.version == candidate.version
        )
        if mine or not candidate.slots:  # an update that sets nothing is still sent (a no-op for it)
            lost = [_newer_version(slots, winners, name) for name in candidate.slots if name not in mine]
            dispositions[candidate.index] = Contributing(won=mine, newer_version=max(lost, default=None))
            continue
        covering = [_newer_version(slots, winners, name) for name in candidate.slots]
        by_state = all(
            (slots.get(name) or SlotState()).version == version
            for name, version in zip(candidate.slots, covering, strict=True)
        )
        kind = Covered if by_state else Shadowed
        dispositions[candidate.index] = kind(newer_version=max(covering))
    return dispositions


def _wait(slots: Mapping[str, SlotState], candidate: Candidate, now: int) -> Waiting | None:
    """What the candidate waits for (slot, version in doubt, when to come back); None if nothing."""
    for name in sorted(candidate.slots):
        state = slots.get(name) or SlotState()
        heal_pending = state.heal_at_ms is not None and now < state.heal_at_ms
        if state.doubt == candidate.version and heal_pending:
            # Its own earlier attempt may still land: come back when its heal is due, so this very
            # update (an EventBridge retry comes after a minute) is what heals the target.
            return Waiting(slot=name, version=candidate.version, until_ms=state.heal_at_ms or now)
        covered = state.version is not None and state.version > candidate.version
        if not covered and state.doubt is not None and state.doubt > candidate.version:
            return Waiting(slot=name, version=state.doubt, until_ms=state.heal_at_ms or now)
    return None


def _carry_in_doubt(
    slots: Mapping[str, SlotState], winners: Mapping[str, Candidate], now: int
) -> Waiting | None:
    """The wait for a carried key whose newer write may still land (key slot, version, heal time)."""
    for name in sorted(metadata_keys(slots)):
        state = slots[name]
        pending = state.heal_at_ms is not None and now < state.heal_at_ms
        if name not in winners and state.doubt is not None and state.doubt > (state.version or 0) and pending:
            return Waiting(slot=name, version=state.doubt, until_ms=state.heal_at_ms or now)
    return None


def _winners(slots: Mapping[str, SlotState], active: Sequence[Candidate]) -> dict[str, Candidate]:
    """Slot → the newest active candidate setting it, where no newer confirmed version covers it;
    between equal versions the later in the batch wins (a redelivery carries the same value)."""
    best: dict[str, Candidate] = {}
    for candidate in active:
        for name in candidate.slots:
            rival = best.get(name)
            if rival is None or candidate.version >= rival.version:
                best[name] = candidate
    return {
        name: winner
        for name, winner in best.items()
        if (slots.get(name) or SlotState()).version is None or winner.version >= (slots[name].version or 0)
    }


def _over_key_limit(
    confirmed_keys: frozenset[str], active: Sequence[Candidate], winners: Mapping[str, Candidate]
) -> Candidate | None:
    """The first candidate (oldest version first) whose won keys would take the target past 16 keys."""
    held = set(confirmed_keys)
    for candidate in sorted(active, key=lambda seen: (seen.version, seen.index)):
        mine = {name for name, winner in winners.items() if winner is candidate}
        added = metadata_keys(dict.fromkeys(mine)) - held
        if len(held) + len(added) > MAX_METADATA_KEYS:
            return candidate
        held |= added
    return None


def _newer_version(slots: Mapping[str, SlotState], winners: Mapping[str, Candidate], name: str) -> int:
    """The version that covers a slot: the request's winner, else the confirmed one."""
    winner = winners.get(name)
    if winner is not None:
        return winner.version
    return (slots.get(name) or SlotState()).version or 0
