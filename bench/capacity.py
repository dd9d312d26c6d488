"""What DynamoDB would bill for a call: item sizes and request units, from the items themselves.

moto answers ``ReturnConsumedCapacity`` with a constant (1.0 for PutItem and DeleteItem, 0.5 for
GetItem, nothing at all for UpdateItem), whatever the item's size, so the benchmark counts units
itself (``bench.dynamodb_server``) with these rules, from DynamoDB's developer guide ("Item sizes
and formats", "Read/write capacity mode"):

* an item's size is the sum of its attributes' sizes; an attribute's size is the UTF-8 length of its
  name plus the size of its value;
* String: UTF-8 bytes; Binary: raw bytes; Number: 1 byte per two significant digits, plus 1;
  Boolean and Null: 1 byte; a set: the sum of its members; List and Map: 3 bytes, plus 1 byte per
  element, plus the elements (a Map's element is its key's name and its value);
* a write (PutItem, UpdateItem, DeleteItem) bills ``ceil(max(size before, size after) / 1 KB)``
  write units, at least 1, and so does a write whose condition failed (the item is unchanged);
* a strongly consistent read bills ``ceil(size / 4 KB)`` read units, at least 1; an eventually
  consistent one half that.

Items are in DynamoDB's JSON form (``{"name": {"S": "..."}}``), as the wire and moto carry them.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Mapping
from typing import Any

WRITE_UNIT_BYTES = 1024
READ_UNIT_BYTES = 4096
CONTAINER_OVERHEAD = 3  # a List or Map, besides 1 byte per element


def number_size(text: str) -> int:
    """A Number's size: its significant digits (leading and trailing zeroes trimmed), 2 a byte, + 1."""
    mantissa = text.strip().lstrip("+-").lower().split("e", 1)[0]
    digits = mantissa.replace(".", "").strip("0")
    return math.ceil(len(digits) / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """The size of one attribute value in DynamoDB JSON (``{"S": ...}``, ``{"M": {...}}``, ...)."""
    ((kind, content),) = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        return number_size(str(content))
    if kind == "B":
        return len(base64.b64decode(content)) if isinstance(content, str) else len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(member.encode()) for member in content)
    if kind == "NS":
        return sum(number_size(member) for member in content)
    if kind == "BS":
        return sum(value_size({"B": member}) for member in content)
    if kind == "L":
        return CONTAINER_OVERHEAD + sum(1 + value_size(element) for element in content)
    if kind == "M":
        return CONTAINER_OVERHEAD + sum(
            1 + attribute_size(name, element) for name, element in content.items()
        )
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def attribute_size(name: str, value: Mapping[str, Any]) -> int:
    return len(name.encode()) + value_size(value)


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """An item's size in bytes (0 for no item)."""
    return sum(attribute_size(name, value) for name, value in (item or {}).items())


def write_units(before: int, after: int) -> int:
    """Write request units of one write: the larger of the item's sizes before and after, 1 KB each."""
    return max(1, math.ceil(max(before, after) / WRITE_UNIT_BYTES))


def read_units(size: int, *, consistent: bool) -> float:
    """Read request units of one item read (4 KB each; an eventually consistent read is half)."""
    units = max(1, math.ceil(size / READ_UNIT_BYTES))
    return float(units) if consistent else units / 2
