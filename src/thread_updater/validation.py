"""Validation messages that never repeat the offending input, shared by the models and the settings.

Pydantic's own error text echoes the input. For an update that is user data (possibly huge), for the
environment it may be a credential: the messages here name the field and the problem only.
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = ["describe_validation_error"]


def describe_validation_error(error: ValidationError) -> str:
    """`field: problem; ...` without the offending values (they may be sensitive)."""
    problems = []
    for item in error.errors(include_url=False, include_input=False, include_context=False):
        where = ".".join(str(part) for part in item["loc"]) or "value"
        problems.append(f"{where}: {item['msg']}")
    return "; ".join(problems)
