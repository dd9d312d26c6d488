"""The state table (DynamoDB): what was applied, what is in doubt, and who holds a thread or conversation.

No upstream offers a conditional write, so the order in which requests land decides what a target
holds. This table makes the order explicit. One item per target (partition key ``thread_id``, String:
a thread's id, or ``conversation:<id>``; the key schema never changes, so a deploy never replaces the
table), attributes owned by the function:

=========================  ======================================================================
``slots``                  JSON: slot name (slots.py: ``m:<key>``, ``metadata``, ``tool_resources``)
                           → ``{"v": version confirmed, "j": its value, "d": version in doubt,
                           "h": heal time in epoch ms}``; absent members are unknown
``lease_token``            the holder of the target: one Modify request in flight at most
``lease_until``            epoch ms when the lease ends by itself (holder's deadline + grace)
``expires_at``             epoch seconds; DynamoDB's TTL removes targets idle for the configured days
=========================  ======================================================================

Items written before per-key state (``<field>_version``, ``<field>_value``, ``<field>_doubt``,
``<field>_heal_at``) are read as the slots ``metadata`` and ``tool_resources``, and rewritten as
``slots`` on their next write.

Every write is a conditional ``UpdateItem``: a claim succeeds only when no live lease exists (or the
lease is this claim's own, when botocore retried a claim whose first answer was lost), and every
later write of the claim requires the same token, so two invocations never interleave. The item is
one attribute rewritten whole by the lease holder, which alone may change it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from thread_updater.aws import WORST_CASE_CALL_S, LazyClient
from thread_updater.deadline import Deadline
from thread_updater.errors import ConfigurationError, StateUnavailableError
from thread_updater.models import UPDATE_FIELDS
from thread_updater.slots import SlotState

__all__ = ["Lease", "StateTable", "ThreadBusy", "now_ms"]

# DynamoDB answers that mean the deployment is wrong, not that the table is briefly unavailable.
_CONFIGURATION_CODES = frozenset(
    {
        "ResourceNotFoundException",
        "AccessDeniedException",
        "UnrecognizedClientException",
        "ValidationException",
        "InvalidSignatureException",
        "MissingAuthenticationTokenException",
    }
)


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A claim on one target: its token guards every write until it is released or expires."""

    key: str
    token: str
    slots: Mapping[str, SlotState]


@dataclass(frozen=True, kw_only=True)
class ThreadBusy:
    """Another invocation holds the thread until ``until_ms`` (epoch ms, when known)."""

    until_ms: int | None


def now_ms() -> int:
    return int(time.time() * 1000)


class StateTable:
    """Claims, records and releases threads in the state table; the client is created on first use."""

    def __init__(self, table_name: str, *, ttl_days: int) -> None:
        self.table_name = table_name
        self._ttl_s = ttl_days * 86400
        self._dynamodb = LazyClient("dynamodb")

    def claim(self, key: str, *, until_ms: int, deadline: Deadline) -> Lease | ThreadBusy:
        """Take the target until ``until_ms`` unless another live lease holds it."""
        token = uuid.uuid4().hex
        now = now_ms()
        try:
            answer = self._call(
                "update_item",
                deadline,
                Key={"thread_id": {"S": key}},
                UpdateExpression="SET lease_token = :token, lease_until = :until, expires_at = :expires",
                # Our own token: botocore retried this claim after its first answer was lost.
                ConditionExpression=(
                    "attribute_not_exists(lease_until) OR lease_until < :now OR lease_token = :token"
                ),
                ExpressionAttributeValues={
                    ":token": {"S": token},
                    ":until": {"N": str(until_ms)},
                    ":expires": {"N": str(now // 1000 + self._ttl_s)},
                    ":now": {"N": str(now)},
                },
                ReturnValues="ALL_NEW",
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except _ConditionFailed as failed:
            return ThreadBusy(until_ms=_number(failed.item.get("lease_until")))
        return Lease(key=key, token=token, slots=_slots(answer.get("Attributes", {})))

    def finish(
        self,
        lease: Lease,
        *,
        slots: Mapping[str, SlotState] | None,
        hold_until_ms: int | None,
        deadline: Deadline,
    ) -> bool:
        """Record the target's slots (None: unchanged) and release the lease, or keep it until
        ``hold_until_ms`` (a late write may still land: nothing else may be sent for it before).

        Returns False when the lease was lost meanwhile (it expired and another invocation took it).
        """
        values: dict[str, Any] = {":token": {"S": lease.token}}
        sets: list[str] = []
        removes: list[str] = []
        if slots is not None:
            sets.append("slots = :slots")
            values[":slots"] = {"S": _encode(slots)}
            removes += _LEGACY_ATTRIBUTES
        if hold_until_ms is None:
            removes += ["lease_token", "lease_until"]
        else:
            sets.append("lease_until = :hold")
            values[":hold"] = {"N": str(hold_until_ms)}
        expression = f"SET {', '.join(sets)} " if sets else ""
        expression += f"REMOVE {', '.join(removes)}" if removes else ""
        try:
            self._call(
                "update_item",
                deadline,
                Key={"thread_id": {"S": lease.key}},
                UpdateExpression=expression,
                ConditionExpression="lease_token = :token",
                ExpressionAttributeValues=values,
            )
        except _ConditionFailed:
            return False
        return True

    def read(self, key: str, *, deadline: Deadline) -> Mapping[str, SlotState]:
        """The target's slots without claiming it (for operators' tools)."""
        answer = self._call("get_item", deadline, Key={"thread_id": {"S": key}}, ConsistentRead=True)
        return _slots(answer.get("Item", {}))

    def _call(self, operation: str, deadline: Deadline, **request: Any) -> dict[str, Any]:
        """One bounded DynamoDB call, started only if it can finish before ``deadline``.

        Raises StateUnavailableError (transient: throttling, network, out of time), ConfigurationError
        (the table is missing or not ours to use) or _ConditionFailed.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        if not deadline.allows(WORST_CASE_CALL_S):
            raise StateUnavailableError("not enough time left in this invocation for the state table")
        try:
            method = getattr(self._dynamodb(), operation)
            answer: dict[str, Any] = method(TableName=self.table_name, **request)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ConditionalCheckFailedException":
                item: Mapping[str, Any] = error.response.get("Item", {})  # type: ignore[assignment]
                raise _ConditionFailed(item) from None
            if code in _CONFIGURATION_CODES:
                raise ConfigurationError(
                    f"state table {self.table_name!r} cannot be used ({code}): check THREAD_STATE_TABLE "
                    "and the function's DynamoDB permissions"
                ) from None
            raise StateUnavailableError(f"state table {operation} failed: {code or error}") from None
        except BotoCoreError as error:
            raise StateUnavailableError(f"state table {operation} failed: {error}") from None
        return answer


class _ConditionFailed(Exception):
    def __init__(self, item: Mapping[str, Any]) -> None:
        super().__init__("condition failed")
        self.item = item


def _number(attribute: Any) -> int | None:
    return int(attribute["N"]) if isinstance(attribute, Mapping) and "N" in attribute else None


_LEGACY_ATTRIBUTES = [
    f"{name}_{part}" for name in UPDATE_FIELDS for part in ("version", "value", "doubt", "heal_at")
]


def _encode(slots: Mapping[str, SlotState]) -> str:
    """The ``slots`` attribute: compact JSON, members left out when unknown (the item stays small)."""
    encoded: dict[str, dict[str, Any]] = {}
    for name, slot in sorted(slots.items()):
        member: dict[str, Any] = {}
        if slot.version is not None:
            member["v"] = slot.version
            member["j"] = slot.value
        if slot.doubt is not None:
            member["d"] = slot.doubt
            member["h"] = slot.heal_at_ms
        if member:
            encoded[name] = member
    return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)


def _slots(item: Mapping[str, Any]) -> dict[str, SlotState]:
    encoded = item.get("slots", {}).get("S")
    if encoded is not None:
        return {
            name: SlotState(
                version=member.get("v"),
                value=member.get("j"),
                doubt=member.get("d"),
                heal_at_ms=member.get("h"),
            )
            for name, member in json.loads(encoded).items()
        }
    slots = {}
    for name in UPDATE_FIELDS:  # an item written before per-key state
        legacy = item.get(f"{name}_value", {}).get("S")
        slot = SlotState(
            version=_number(item.get(f"{name}_version")),
            value=json.loads(legacy) if legacy is not None else None,
            doubt=_number(item.get(f"{name}_doubt")),
            heal_at_ms=_number(item.get(f"{name}_heal_at")),
        )
        if slot.version is not None or slot.doubt is not None:
            slots[name] = slot
    return slots
