"""The seam for "this letter is superseded": a newer version of its thread was already applied.

Replaying such a letter would write older state over newer. The check against the function's
per-thread state table plugs in here; until then no letter is superseded. ``replay`` skips a
superseded letter (keeps it in the DLQ, reports it as ``superseded``) unless ``--force`` is given.
"""

from __future__ import annotations

from collections.abc import Callable

from ops.dlq.letters import Letter

SupersededCheck = Callable[[Letter], bool]


def is_superseded(letter: Letter) -> bool:
    """Whether the thread's applied version is newer than ``letter.version`` (not wired yet: never)."""
    del letter
    return False
