"""Validation messages that never repeat the offending input, shared by the models and the settings.

Pydantic's own error text echoes the input. For an update that is user data (possibly huge), for the
environment it may be a credential: the messages here name the field and the problem only.

A field's location can still hold user data (a metadata key is part of the path), so each path part is
clipped to ``LOCATION_PART_LIMIT`` characters and the whole reason to ``REASON_LIMIT``: a dead letter
carries the payload once, not twice.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["LOCATION_PART_LIMIT", "REASON_LIMIT", "clip", "describe_validation_error"]

REASON_LIMIT = 1000
"""Characters of a validation reason (in the dead letter's ``error`` and the log line)."""
LOCATION_PART_LIMIT = 64
"""Characters of one part of a field's path (a metadata key may be as long as the message allows)."""


def clip(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, the cut marked with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_validation_error(error: ValidationError, *, prefix: str = "") -> str:
    """`field: problem; ...` without the offending values (they may be sensitive), clipped; ``prefix``
    is where the validated value sits in the message (``detail`` for an EventBridge event's)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        parts = ([prefix] if prefix else []) + [clip(str(part), LOCATION_PART_LIMIT) for part in item["loc"]]
        where = ".".join(parts) or "value"
        problems.append(f"{where}: {item['msg']}")
    return clip("; ".join(problems), REASON_LIMIT)
