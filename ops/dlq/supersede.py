"""Is this letter superseded: does its thread already hold a newer version of every field it sets?

Replaying such a letter would only be acknowledged by the function as ``superseded`` (the function
checks the state table itself, so a replay can never roll a thread back); skipping it here keeps
the run's report honest and saves a round trip. ``replay`` keeps a superseded letter in the DLQ and
reports it as ``superseded``; ``--force`` replays it anyway.

The check reads the function's own state table (``THREAD_STATE_TABLE`` / ``--state-table``, the
stack output ``ThreadStateTableName``) through the function's own ``StateTable`` and parses the
letter's payload with the function's own models, so tool and function never disagree on either.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO

from ops.dlq.letters import Letter
from thread_updater.errors import ConfigurationError, StateUnavailableError
from thread_updater.models import InvalidUpdate, parse_sqs_body, parse_update_document
from thread_updater.state import StateTable

SupersededCheck = Callable[[Letter], bool]
_READ_BUDGET_S = 30.0


def is_superseded(letter: Letter) -> bool:
    """Without a state table nothing is known to be superseded."""
    del letter
    return False


def update_fields(letter: Letter) -> frozenset[str]:
    """The thread fields the letter's update sets (empty when it is not a valid update)."""
    target = letter.target
    if target is None:
        return frozenset()
    try:
        parsed = parse_update_document(target.event) if target.kind == "bus" else parse_sqs_body(target.body)
    except InvalidUpdate:
        return frozenset()
    return parsed.update.fields


class StateTableCheck:
    """``is_superseded`` against the state table; a table that cannot be read makes it answer "no"
    (warned once): the replayed copy is then checked by the function itself."""

    def __init__(self, table_name: str, err: TextIO = sys.stderr) -> None:
        self._table = StateTable(table_name, ttl_days=1)  # read-only here: the TTL is never written
        self._err = err
        self._warned = False

    def __call__(self, letter: Letter) -> bool:
        fields = update_fields(letter)
        if letter.thread_id is None or letter.version is None or not fields:
            return False
        try:
            state = self._table.read(letter.thread_id, deadline=time.monotonic() + _READ_BUDGET_S)
        except (StateUnavailableError, ConfigurationError) as error:
            if not self._warned:
                self._warned = True
                print(
                    f"warning: state table {self._table.table_name!r} not readable ({error}); letters are "
                    "replayed unchecked and the function skips the superseded ones",
                    file=self._err,
                )
            return False
        applied = [state.field(name).version for name in fields]
        return all(version is not None and version > letter.version for version in applied)
