"""Slots: the units of a thread's or conversation's state that "newest version wins" is decided on.

What a slot is depends on what the upstream does with a metadata map (``METADATA_SEMANTICS``):

* ``merge`` (the default; what OpenAI was observed to do for threads and conversations): an update
  sets only the metadata keys it names, and keys cannot be deleted. Each metadata key is a slot of
  its own (``m:<key>``), so each key's newest version wins.
* ``replace``: the map an update sends is the whole map. ``metadata`` is one slot.

``tool_resources`` (threads only) is one slot under both: its newest value wins whole.

A request always makes the upstream hold the *whole* desired map under ``merge`` (every key the
state table knows, each at its newest value), so the state is right whether the upstream really
merges or replaces; see docs/ordering.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from thread_updater.models import Update

__all__ = [
    "KEY_PREFIX",
    "MAX_METADATA_KEYS",
    "METADATA",
    "TOOL_RESOURCES",
    "Semantics",
    "SlotState",
    "metadata_keys",
    "request_body",
    "semantic_problem",
    "slots_of",
]

KEY_PREFIX = "m:"  # a metadata key's slot under merge: "m:" + the key
METADATA = "metadata"  # the whole map's slot under replace
TOOL_RESOURCES = "tool_resources"
MAX_METADATA_KEYS = 16  # what the upstream lets a thread or conversation hold


class Semantics(StrEnum):
    """What the upstream does with an update's metadata map (``METADATA_SEMANTICS``)."""

    MERGE = "merge"
    REPLACE = "replace"


@dataclass(frozen=True, kw_only=True)
class SlotState:
    """One slot in the state table: the newest confirmed write, and a write in doubt.

    ``version``/``value``: the highest version whose value Portkey confirmed (2xx), and that value;
    ``doubt``: the highest version sent whose outcome is unknown (the upstream may still write it);
    ``heal_at_ms``: when that late write is assumed to have landed or died (epoch ms).
    """

    version: int | None = None
    value: Any = None
    doubt: int | None = None
    heal_at_ms: int | None = None


def slots_of(update: Update, semantics: Semantics) -> dict[str, Any]:
    """The slots an update sets, with their values (an explicit null sets a slot too)."""
    body = update.request_body()
    slots: dict[str, Any] = {}
    if TOOL_RESOURCES in body:
        slots[TOOL_RESOURCES] = body[TOOL_RESOURCES]
    if METADATA in body:
        if semantics is Semantics.REPLACE:
            slots[METADATA] = body[METADATA]
        else:
            slots.update({KEY_PREFIX + key: value for key, value in (body[METADATA] or {}).items()})
    return slots


def semantic_problem(update: Update, semantics: Semantics) -> str | None:
    """Why an update cannot be applied under ``semantics`` (a validation letter), or None.

    Under merge a null metadata map would mean "delete every key", which a merging upstream cannot
    do; sending it would leave the thread's keys in place while the table believes otherwise.
    """
    if semantics is Semantics.MERGE and METADATA in update.fields and update.request_body()[METADATA] is None:
        return (
            "metadata null cannot be applied with METADATA_SEMANTICS=merge: a merging upstream cannot "
            'delete keys (set a key to "" instead; see docs/ordering.md)'
        )
    return None


def metadata_keys(slots: Mapping[str, Any]) -> frozenset[str]:
    """The metadata keys among slot names (merge)."""
    return frozenset(name for name in slots if name.startswith(KEY_PREFIX))


def request_body(
    values: Mapping[str, Any], semantics: Semantics, *, metadata_required: bool
) -> dict[str, Any]:
    """The Modify body that sets these slots (slot → value).

    ``metadata_required``: Modify Conversation requires the field, so a request that sets no key
    still carries ``{"metadata": {}}`` (under merge: set nothing). Modify Thread then gets ``{}``.
    """
    body: dict[str, Any] = {}
    if semantics is Semantics.REPLACE:
        if METADATA in values:
            body[METADATA] = values[METADATA]
    else:
        # In the order the slots come (an update's own key order, for a request of one update).
        keys = {
            name[len(KEY_PREFIX) :]: value for name, value in values.items() if name.startswith(KEY_PREFIX)
        }
        if keys:
            body[METADATA] = keys
    if metadata_required and METADATA not in body:
        body[METADATA] = {}
    if TOOL_RESOURCES in values:
        body[TOOL_RESOURCES] = values[TOOL_RESOURCES]
    return body
