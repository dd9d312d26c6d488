"""One request per thread or conversation per batch: claim, plan, send, record, release.

``GroupApplier.apply`` takes the valid updates of one target from one batch. With the state table
it claims the target, plans against its slots (ordering.py), sends one Modify request that carries
every winning slot, records what the answer means for each slot, and releases the claim; without
the table the same plan runs against an empty state, so within a batch the newest version per slot
still wins. Each update gets one ``GroupResult``; processing.py turns them into outcomes.

A rejected request that carried more than one update, or a heal, is retried one update at a time
without heals: a heal or a neighbour the upstream refuses must not take innocent updates with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

from thread_updater.aws import WORST_CASE_CALL_S
from thread_updater.deadline import Deadline
from thread_updater.delays import busy_delay, wait_delay
from thread_updater.models import Target, TargetKind, Update
from thread_updater.observability import logger
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
from thread_updater.portkey import CallOutcome, CallResult, PortkeyClient
from thread_updater.slots import MAX_METADATA_KEYS, Semantics, SlotState, request_body, slots_of
from thread_updater.state import Lease, StateTable, ThreadBusy, now_ms

__all__ = [
    "RECORD_RESERVE_S",
    "Applied",
    "GroupApplier",
    "GroupResult",
    "HandedBack",
    "Member",
    "Rejected",
    "Superseded",
]

# Kept back from every Modify call's deadline: the state-table write that records its result (one
# bounded DynamoDB call, WORST_CASE_CALL_S) must still be allowed to start after the slowest answer.
RECORD_RESERVE_S = WORST_CASE_CALL_S + 1.0


@dataclass(frozen=True, kw_only=True)
class Member:
    """One update of the group, by its position in the batch."""

    index: int
    version: int
    update: Update
    trace_id: str


@dataclass(frozen=True, kw_only=True)
class Applied:
    call: CallOutcome
    sent: tuple[str, ...] | None  # the update's slots that were sent, when not all of them were
    newer_version: int | None  # the newest version covering its other slots
    healed: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Superseded:
    newer_version: int | None
    call: CallOutcome | None  # the request that carried the newer updates (or a heal), if one was sent
    healed: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class Rejected:
    """A dead letter (category rejected): the upstream's 4xx, or the key limit before any request."""

    error: str
    call: CallOutcome | None


@dataclass(frozen=True, kw_only=True)
class HandedBack:
    """Back to the queue; ``delay_s`` None: the transient delay for its receive count."""

    error: str
    delay_s: float | None
    call: CallOutcome | None = None


GroupResult = Applied | Superseded | Rejected | HandedBack


class GroupApplier:
    """Applies a target's updates in one request, through its claim when there is a state table."""

    def __init__(
        self,
        client: PortkeyClient,
        table: StateTable | None,
        *,
        semantics: Semantics,
        lease_grace_s: float,
        heal_delay_s: float,
    ) -> None:
        self._client = client
        self._table = table
        self.semantics = semantics
        self._grace_ms = int(lease_grace_s * 1000)
        self.heal_delay_s = heal_delay_s  # also the retry delay of an update whose outcome is unknown
        self._heal_delay_ms = int(heal_delay_s * 1000)

    @property
    def records(self) -> bool:
        return self._table is not None

    def apply(
        self, target: Target, members: Sequence[Member], *, deadline: Deadline
    ) -> dict[int, GroupResult]:
        """Raises StateUnavailableError or ConfigurationError (after recording what was sent)."""
        if self._table is None:
            return _Run(self, target, members, slots={}, deadline=deadline).run()[0]
        wall_deadline_ms = deadline.wall_ms()
        claim = self._table.claim(
            target.state_key, until_ms=wall_deadline_ms + self._grace_ms, deadline=deadline
        )
        if isinstance(claim, ThreadBusy):
            delay = busy_delay(claim.until_ms, now_ms())
            busy = HandedBack(error=f"the {target.kind.value} is held by another invocation", delay_s=delay)
            return {member.index: busy for member in members}
        try:
            run = _Run(self, target, members, slots=claim.slots, deadline=deadline)
            results, halt = run.run_halting()
            self._record(claim, run, deadline)
        except BaseException:
            self._release_quietly(claim, deadline)
            raise
        if halt is not None:
            raise halt
        return results

    def _record(self, lease: Lease, run: _Run, deadline: Deadline) -> None:
        if self._table is None:  # pragma: no cover - apply() records only with a table
            return
        hold = now_ms() + self._grace_ms if run.uncertain else None
        recorded = self._table.finish(
            lease, slots=run.slots if run.changed else None, hold_until_ms=hold, deadline=deadline
        )
        if not recorded:
            logger.warning(
                "the lease expired before the result was recorded",
                extra={run.target.id_field: run.target.id},
            )

    def _release_quietly(self, lease: Lease, deadline: Deadline) -> None:
        """Best effort on the way out of an error: an unreleased lease still expires by itself."""
        if self._table is None:  # pragma: no cover
            return
        try:
            self._table.finish(lease, slots=None, hold_until_ms=None, deadline=deadline)
        except Exception:  # the error being raised matters more than this one
            logger.debug("could not release a lease", extra={"key": lease.key})


class _Run:
    """One group's plan, request(s) and the slots they leave: what ``GroupApplier`` records."""

    def __init__(
        self,
        applier: GroupApplier,
        target: Target,
        members: Sequence[Member],
        *,
        slots: Mapping[str, SlotState],
        deadline: Deadline,
    ) -> None:
        self.applier = applier
        self.target = target
        self.members = {member.index: member for member in members}
        self.semantics = applier.semantics
        self.slots = normalised(slots, self.semantics)
        self.changed = self.slots != dict(slots)
        self.uncertain = False
        self.deadline = deadline
        self.reserve_s = RECORD_RESERVE_S if applier.records else 0.0  # nothing to record without a table
        self.candidates = [
            Candidate(index=m.index, version=m.version, slots=slots_of(m.update, self.semantics))
            for m in members
        ]

    def run(self) -> tuple[dict[int, GroupResult], None]:
        results, halt = self.run_halting()
        if halt is not None:
            raise halt
        return results, None

    def run_halting(self) -> tuple[dict[int, GroupResult], Exception | None]:
        """Every member's result, and the configuration error to raise once the slots are recorded."""
        plan = plan_group(self.slots, self.candidates, now=now_ms(), semantics=self.semantics)
        results: dict[int, GroupResult] = {}
        for index, waiting in plan.of(Waiting).items():
            results[index] = HandedBack(
                error=f"waiting for {_slot_label(waiting.slot)} version {waiting.version}, "
                "whose outcome is unknown",
                delay_s=wait_delay(plan.wait_until_ms, now_ms()),
            )
        for index in plan.of(OverKeyLimit):
            results[index] = Rejected(
                error=f"the {self.target.kind.value} would hold more than {MAX_METADATA_KEYS} metadata keys "
                "(the upstream's limit; keys cannot be deleted): nothing was sent",
                call=None,
            )
        sharing = [*plan.of(Contributing), *plan.of(Shadowed)]
        if not plan.request_needed:
            for index, covered in plan.of(Covered).items():
                results[index] = Superseded(newer_version=covered.newer_version, call=None, healed=())
            return results, None
        # A heal rides on the group's request: a superseded update stays until the heal is applied,
        # so a heal that fails comes back with it instead of being forgotten.
        sharing += plan.of(Covered)
        call = self._send(plan, trace_id=self._trace_id(sharing))
        if call.result is CallResult.REJECTED and (len(sharing) > 1 or plan.healed):
            alone, halt = self._one_by_one(sharing)
            return results | alone, halt
        results |= self._results(plan, call, sharing)
        return results, call.halt

    def _send(self, plan: GroupPlan, *, trace_id: str) -> CallOutcome:
        """The request, and what its answer means for the slots it carried."""
        body = request_body(
            {name: sent.value for name, sent in plan.send.items()},
            self.semantics,
            metadata_required=self.target.kind is TargetKind.CONVERSATION,
        )
        call = self.applier._client.modify(
            self.target, body, trace_id=trace_id, deadline=self.deadline.minus(self.reserve_s)
        )
        now = now_ms()
        for name, sent in plan.send.items():
            current = self.slots.get(name) or SlotState()
            if call.result is CallResult.APPLIED:
                settled = current.doubt is not None and (current.heal_at_ms or 0) <= now
                settled = settled and sent.version >= (current.doubt or 0)
                current = SlotState(
                    version=max(sent.version, current.version or 0),
                    value=sent.value if sent.version >= (current.version or 0) else current.value,
                    doubt=None if settled else current.doubt,
                    heal_at_ms=None if settled else current.heal_at_ms,
                )
            elif (
                call.result is CallResult.REJECTED
                and current.doubt == sent.version
                and name not in plan.healed
            ):
                current = replace(current, doubt=None, heal_at_ms=None)  # its own doubt: it will never land
            if call.uncertain and call.result is not CallResult.REJECTED:
                # Some attempt may still be written later, over a newer write: heal it after the delay.
                # Not after a permanent refusal: the upstream refused this very body, so the earlier
                # attempt of it did not write either; a doubt left here would never be settled (no
                # one sends this version again) and older updates would wait for it until exhausted.
                current = replace(
                    current,
                    doubt=max(sent.version, current.doubt or 0),
                    heal_at_ms=now + self.applier._heal_delay_ms,
                )
            if current != self.slots.get(name):
                self.slots[name] = current
                self.changed = True
        self.uncertain = self.uncertain or call.uncertain
        return call

    def _results(self, plan: GroupPlan, call: CallOutcome, sharing: Sequence[int]) -> dict[int, GroupResult]:
        results: dict[int, GroupResult] = {}
        for index in sharing:
            results[index] = self._result_of(plan, call, index)
        return results

    def _result_of(self, plan: GroupPlan, call: CallOutcome, index: int) -> GroupResult:
        if call.result is CallResult.REJECTED:
            return Rejected(error=call.error or "", call=call)
        heals = self.applier.records  # without a table nothing remembers a doubt: nothing to heal
        if call.result is not CallResult.APPLIED:
            after_doubt = heals and call.uncertain and call.result is not CallResult.HALTED
            delay = self.applier.heal_delay_s if after_doubt else None
            return HandedBack(error=call.error or "", delay_s=delay, call=call)
        if call.uncertain and heals:
            # Applied by a retry, but an earlier attempt may still be written late, over a newer
            # update sent after the lease's grace: coming back when the heal is due looks again.
            return HandedBack(
                error="applied, but an earlier attempt's outcome is unknown: back when its heal is due",
                delay_s=self.applier.heal_delay_s,
                call=call,
            )
        healed = tuple(sorted(_slot_label(name) for name in plan.healed))
        disposition = plan.dispositions[index]
        if not isinstance(disposition, Contributing):
            newer = disposition.newer_version if isinstance(disposition, Covered | Shadowed) else None
            return Superseded(newer_version=newer, call=call, healed=healed)
        own = self.candidates_by_index[index].slots
        partial = disposition.won != frozenset(own)
        return Applied(
            call=call,
            sent=tuple(sorted(_slot_label(name) for name in disposition.won)) if partial else None,
            newer_version=disposition.newer_version,
            healed=healed,
        )

    @property
    def candidates_by_index(self) -> dict[int, Candidate]:
        return {candidate.index: candidate for candidate in self.candidates}

    def _one_by_one(self, indexes: Sequence[int]) -> tuple[dict[int, GroupResult], Exception | None]:
        """After a rejected shared request: each update alone, oldest first, without heals."""
        results: dict[int, GroupResult] = {}
        halt: Exception | None = None
        by_index = self.candidates_by_index
        for index in sorted(indexes, key=lambda seen: (by_index[seen].version, seen)):
            if halt is not None:
                results[index] = HandedBack(error=f"configuration error: {halt}", delay_s=None)
                continue
            plan = plan_group(
                self.slots, [by_index[index]], now=now_ms(), semantics=self.semantics, heal=False
            )
            disposition = plan.dispositions[index]
            if isinstance(disposition, Covered):
                results[index] = Superseded(newer_version=disposition.newer_version, call=None, healed=())
                continue
            if not isinstance(disposition, Contributing):  # pragma: no cover - alone, it waits on nothing new
                kind = type(disposition).__name__
                results[index] = HandedBack(error=f"not sent alone ({kind})", delay_s=None)
                continue
            call = self._send(plan, trace_id=self.members[index].trace_id)
            results[index] = self._result_of(plan, call, index)
            halt = call.halt
        return results, halt

    def _trace_id(self, sharing: Sequence[int]) -> str:
        """The request's trace id: the newest update's message id (the one whose values it carries)."""
        newest = max(sharing, key=lambda index: (self.members[index].version, index))
        return self.members[newest].trace_id


def _slot_label(name: str) -> str:
    """A slot as operators read it: ``metadata.<key>``, ``metadata`` or ``tool_resources``."""
    return f"metadata.{name[2:]}" if name.startswith("m:") else name
