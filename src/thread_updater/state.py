"""The per-thread state table (DynamoDB): what was applied, what is in doubt, and who holds the thread.

Modify Thread replaces what it is given and no upstream offers a conditional write, so the order in
which requests land decides what a thread holds. This table makes the order explicit. One item per
thread (partition key ``thread_id``), attributes owned by the function:

=========================  ======================================================================
``<field>_version``        the highest version whose value of ``<field>`` Portkey confirmed (2xx)
``<field>_value``          that value, as JSON: what a heal re-sends
``<field>_doubt``          the highest version sent for ``<field>`` whose outcome is unknown
                           (timed out, dropped, 5xx): the upstream may still write it (a late write)
``<field>_heal_at``        epoch ms after which that late write is assumed to have landed or died
``lease_token``            the holder of the thread: one Modify Thread request in flight at most
``lease_until``            epoch ms when the lease ends by itself (holder's deadline + grace)
``expires_at``             epoch seconds; DynamoDB's TTL removes threads idle for the configured days
=========================  ======================================================================

Every write is a conditional ``UpdateItem``: a claim succeeds only when no live lease exists, and
every later write of the claim requires the same token, so two invocations never interleave.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from thread_updater.aws import WORST_CASE_CALL_S, LazyClient
from thread_updater.errors import ConfigurationError, StateUnavailableError
from thread_updater.models import UPDATE_FIELDS

if TYPE_CHECKING:
    pass

__all__ = ["FieldState", "Lease", "Settlement", "StateTable", "ThreadBusy", "ThreadState", "now_ms"]

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
class FieldState:
    version: int | None = None
    value: Any = None  # decoded JSON; meaningful only when ``version`` is set
    doubt: int | None = None
    heal_at_ms: int | None = None


@dataclass(frozen=True, kw_only=True)
class ThreadState:
    fields: Mapping[str, FieldState]

    def field(self, name: str) -> FieldState:
        return self.fields.get(name, FieldState())


@dataclass(frozen=True, kw_only=True)
class Lease:
    """A claim on one thread: its token guards every write until it is released or expires."""

    thread_id: str
    token: str
    state: ThreadState


@dataclass(frozen=True, kw_only=True)
class Settlement:
    """What one claim did, to record when it ends.

    ``applied``: field → (version, value) Portkey confirmed; ``doubts``: field → the version sent
    whose outcome is unknown (the update's own, or a heal's), to heal after ``heal_at_ms``;
    ``cleared_doubts``: fields whose doubt is settled; ``hold_until_ms``: keep the lease until then
    instead of releasing it (a late write may still land: nothing else may be sent for the thread
    before).
    """

    applied: Mapping[str, tuple[int, Any]] = field(default_factory=dict)
    doubts: Mapping[str, int] = field(default_factory=dict)
    heal_at_ms: int | None = None
    cleared_doubts: frozenset[str] = frozenset()
    hold_until_ms: int | None = None


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

    def claim(self, thread_id: str, *, until_ms: int, deadline: float) -> Lease | ThreadBusy:
        """Take the thread until ``until_ms`` unless another live lease holds it."""
        token = uuid.uuid4().hex
        now = now_ms()
        try:
            answer = self._call(
                "update_item",
                deadline,
                Key={"thread_id": {"S": thread_id}},
                UpdateExpression="SET lease_token = :token, lease_until = :until, expires_at = :expires",
                ConditionExpression="attribute_not_exists(lease_until) OR lease_until < :now",
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
        return Lease(thread_id=thread_id, token=token, state=_thread_state(answer.get("Attributes", {})))

    def finish(self, lease: Lease, settlement: Settlement, *, deadline: float) -> bool:
        """Record what the claim did and release it (or keep it until ``settlement.hold_until_ms``).

        Returns False when the lease was lost meanwhile (it expired and another invocation took it).
        """
        values: dict[str, Any] = {":token": {"S": lease.token}}
        sets: list[str] = []
        removes: list[str] = []
        for name, (version, value) in settlement.applied.items():
            sets += [f"{name}_version = :{name}_v", f"{name}_value = :{name}_j"]
            values[f":{name}_v"] = {"N": str(version)}
            values[f":{name}_j"] = {"S": json.dumps(value, separators=(",", ":"), ensure_ascii=False)}
        for name, doubt in settlement.doubts.items():
            sets += [f"{name}_doubt = :{name}_d", f"{name}_heal_at = :heal_at"]
            values[f":{name}_d"] = {"N": str(doubt)}
            values[":heal_at"] = {"N": str(settlement.heal_at_ms)}
        for name in settlement.cleared_doubts - settlement.doubts.keys():
            removes += [f"{name}_doubt", f"{name}_heal_at"]
        if settlement.hold_until_ms is None:
            removes += ["lease_token", "lease_until"]
        else:
            sets.append("lease_until = :hold")
            values[":hold"] = {"N": str(settlement.hold_until_ms)}
        expression = f"SET {', '.join(sets)} " if sets else ""
        expression += f"REMOVE {', '.join(removes)}" if removes else ""
        try:
            self._call(
                "update_item",
                deadline,
                Key={"thread_id": {"S": lease.thread_id}},
                UpdateExpression=expression,
                ConditionExpression="lease_token = :token",
                ExpressionAttributeValues=values,
            )
        except _ConditionFailed:
            return False
        return True

    def read(self, thread_id: str, *, deadline: float) -> ThreadState:
        """The thread's state without claiming it (for operators' tools)."""
        answer = self._call("get_item", deadline, Key={"thread_id": {"S": thread_id}}, ConsistentRead=True)
        return _thread_state(answer.get("Item", {}))

    def _call(self, operation: str, deadline: float, **request: Any) -> dict[str, Any]:
        """One bounded DynamoDB call, started only if it can finish before ``deadline``.

        Raises StateUnavailableError (transient: throttling, network, out of time), ConfigurationError
        (the table is missing or not ours to use) or _ConditionFailed.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        if deadline - time.monotonic() < WORST_CASE_CALL_S:
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


def _thread_state(item: Mapping[str, Any]) -> ThreadState:
    fields = {}
    for name in UPDATE_FIELDS:
        encoded = item.get(f"{name}_value", {}).get("S")
        fields[name] = FieldState(
            version=_number(item.get(f"{name}_version")),
            value=json.loads(encoded) if encoded is not None else None,
            doubt=_number(item.get(f"{name}_doubt")),
            heal_at_ms=_number(item.get(f"{name}_heal_at")),
        )
    return ThreadState(fields=fields)
