"""Is this letter superseded: does its target already hold a newer version of every slot it sets?

A slot is what the function orders on (thread_updater/slots.py): each metadata key under
``METADATA_SEMANTICS=merge`` (the default; read from the environment like the function does, or
``--metadata-semantics``), the whole map under ``replace``, and ``tool_resources``. A letter
setting keys ``a`` and ``b`` is superseded only when both have a newer version applied.

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
from collections.abc import Callable
from typing import TextIO

from ops.dlq.letters import Letter
from thread_updater.deadline import Deadline
from thread_updater.errors import ConfigurationError, StateUnavailableError
from thread_updater.models import InvalidUpdate, Update, parse_sqs_body, parse_update_document
from thread_updater.ordering import Candidate, Covered, normalised, plan_group
from thread_updater.slots import Semantics, slots_of
from thread_updater.state import StateTable, now_ms

SupersededCheck = Callable[[Letter], bool]
_READ_BUDGET_S = 30.0


def is_superseded(letter: Letter) -> bool:
    """Without a state table nothing is known to be superseded."""
    del letter
    return False


def letter_update(letter: Letter) -> Update | None:
    """The letter's update (None when it is not a valid one)."""
    target = letter.target
    if target is None:
        return None
    try:
        parsed = parse_update_document(target.event) if target.kind == "bus" else parse_sqs_body(target.body)
    except InvalidUpdate:
        return None
    return parsed.update


class StateTableCheck:
    """``is_superseded`` against the state table; a table that cannot be read makes it answer "no"
    (warned once): the replayed copy is then checked by the function itself."""

    def __init__(
        self, table_name: str, err: TextIO = sys.stderr, *, semantics: Semantics = Semantics.MERGE
    ) -> None:
        self._table = StateTable(table_name, ttl_days=1)  # read-only here: the TTL is never written
        self._semantics = semantics
        self._err = err
        self._warned = False

    def __call__(self, letter: Letter) -> bool:
        update = letter_update(letter)
        slots = slots_of(update, self._semantics) if update is not None else {}
        if update is None or letter.version is None or not slots:
            return False
        try:
            state = self._table.read(update.target.state_key, deadline=Deadline.after(_READ_BUDGET_S))
        except (StateUnavailableError, ConfigurationError) as error:
            if not self._warned:
                self._warned = True
                print(
                    f"warning: state table {self._table.table_name!r} not readable ({error}); letters are "
                    "replayed unchecked and the function skips the superseded ones",
                    file=self._err,
                )
            return False
        # The function's own plan decides, for this update alone: superseded only when confirmed
        # newer versions cover every slot it sets (an equal version would be sent again).
        candidate = Candidate(index=0, version=letter.version, slots=slots)
        plan = plan_group(
            normalised(state, self._semantics), [candidate], now=now_ms(), semantics=self._semantics
        )
        return isinstance(plan.dispositions[0], Covered)
