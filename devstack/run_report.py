"""What ``make run`` prints: every message's outcome, the thread and conversation states, the DLQ
and the totals.

Tables never drop rows silently: past ``limit`` rows they end in ``… N more``. Text is shortened at
word boundaries, and thread ids sort naturally (``thread_gen_3`` before ``thread_gen_29``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TextIO

APPLIED = "applied"
SUPERSEDED = "superseded"  # not sent: a newer version of every field it sets was already applied
STILL_QUEUED = "still queued"
EXHAUSTED = "exhausted"  # the DLQ tool's category for raw bodies moved by the redrive policy


class LoggedOutcomes(logging.Handler):
    """Collects from the function's own log records (their ``outcome`` field) which messages were
    applied or superseded, and each message's last error (never a secret: the function guarantees
    it). Attach it with :func:`recording`."""

    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.applied: set[str] = set()
        self.superseded: set[str] = set()
        self.last_errors: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message_id = getattr(record, "message_id", None)
        if message_id is None:
            return
        outcome = getattr(record, "outcome", None)
        if outcome == "success":
            self.applied.add(str(message_id))
        elif outcome == SUPERSEDED:
            self.superseded.add(str(message_id))
        if error := getattr(record, "error", None):
            self.last_errors[str(message_id)] = str(error)


@contextlib.contextmanager
def recording(logger_name: str) -> Iterator[LoggedOutcomes]:
    """A :class:`LoggedOutcomes` on the function's logger (its service name) meanwhile."""
    handler = LoggedOutcomes()
    logger = logging.getLogger(logger_name)
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@dataclass(frozen=True)
class MessageRow:
    message_id: str
    body: str
    outcome: str
    category: str | None  # the DLQ category when dead-lettered
    receives: int
    reason: str


def natural_key(text: str) -> list[tuple[int, int | str]]:
    """Sort key comparing digit runs as numbers: thread_gen_3 < thread_gen_29."""
    return [(0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"(\d+)", text) if part]


def shorten(text: str, width: int) -> str:
    """``text`` on one line in at most ``width`` characters: cut at a word boundary when there is one
    in the second half, else mid-word, and marked with an ellipsis."""
    line = " ".join(text.split())
    if len(line) <= width:
        return line
    cut = line[: width - 1]
    space = cut.rfind(" ")
    if space >= width // 2:
        cut = cut[:space]
    return cut.rstrip() + "…"


def outcome_rows(
    sent: Mapping[str, str],
    letters: Sequence[Mapping[str, Any]],
    logged: LoggedOutcomes,
    receives_by_message: Mapping[str, int],
) -> list[MessageRow]:
    """One row per sent message (message id → body), in sending order."""
    by_id = {letter["message_id"]: letter for letter in letters}
    rows = []
    for message_id, body in sent.items():
        receives = receives_by_message.get(message_id, 0)
        letter = by_id.get(message_id)
        last_error = logged.last_errors.get(message_id, "")
        if letter is None and message_id in logged.applied:
            outcome, category, reason = APPLIED, None, ""
        elif letter is None and message_id in logged.superseded:
            outcome, category, reason = SUPERSEDED, None, "a newer version was already applied"
        elif letter is None:
            outcome, category, reason = STILL_QUEUED, None, last_error
        elif letter["_shape"] == "redrive":
            outcome, category = f"dead-lettered ({EXHAUSTED})", EXHAUSTED
            reason = f"{receives} receives" + (f", last: {last_error}" if last_error else "")
        else:
            category = str(letter["category"])
            status = f", {letter['status']}" if letter["status"] else ""
            outcome, reason = f"dead-lettered ({category}{status})", str(letter["error"])
        rows.append(MessageRow(message_id, body, outcome, category, receives, reason))
    return rows


def totals_line(rows: Sequence[MessageRow], hand_backs: int) -> str:
    """``N messages: A applied, S superseded, D dead-lettered (by category), Q still queued; H hand-backs``"""
    applied = sum(row.outcome == APPLIED for row in rows)
    superseded = sum(row.outcome == SUPERSEDED for row in rows)
    queued = sum(row.outcome == STILL_QUEUED for row in rows)
    categories = Counter(row.category for row in rows if row.category is not None)
    by_category = ", ".join(f"{name} {count}" for name, count in sorted(categories.items()))
    dead = sum(categories.values())
    return (
        f"Totals: {len(rows)} messages: {applied} applied, {superseded} superseded, {dead} dead-lettered"
        + (f" ({by_category})" if by_category else "")
        + f", {queued} still queued; {hand_backs} hand-backs to the queue (retried later)"
    )


def print_table(
    out: TextIO, title: str, header: Sequence[str], rows: Sequence[Sequence[str]], *, limit: int
) -> None:
    """``title (N)``, the first ``limit`` rows aligned under ``header``, then ``… N more`` if cut."""
    shown = [tuple(map(str, row)) for row in rows[:limit]]
    out.write(f"\n{title} ({len(rows)})\n")
    widths = [max(len(cell) for cell in column) for column in zip(header, *shown, strict=False)]
    for row in [tuple(header), tuple("-" * width for width in widths), *shown]:
        out.write(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip() + "\n"
        )
    if len(rows) > limit:
        out.write(f"… {len(rows) - limit} more (--rows N shows more)\n")


def message_table(out: TextIO, rows: Sequence[MessageRow], *, limit: int) -> None:
    """Messages neither applied nor superseded first (what needs a look), then those; in sending order."""
    ordered = sorted(rows, key=lambda row: row.outcome in (APPLIED, SUPERSEDED))
    cells = [
        (row.message_id[:8], shorten(row.body, 48), row.outcome, str(row.receives), shorten(row.reason, 90))
        for row in ordered
    ]
    print_table(out, "Messages", ("message", "body", "outcome", "receives", "reason"), cells, limit=limit)


def thread_table(out: TextIO, threads: Mapping[str, Mapping[str, Any] | None], *, limit: int) -> None:
    cells = [
        (
            thread_id,
            shorten(json.dumps(thread and thread.get("metadata")), 60),
            shorten(json.dumps(thread and thread.get("tool_resources")), 40),
        )
        for thread_id, thread in sorted(threads.items(), key=lambda item: natural_key(item[0]))
    ]
    print_table(out, "Final thread states", ("thread", "metadata", "tool_resources"), cells, limit=limit)


def conversation_table(
    out: TextIO, conversations: Mapping[str, Mapping[str, Any] | None], *, limit: int
) -> None:
    """Beside the threads: a conversation holds metadata only (``null``: the upstream has none)."""
    cells = [
        (conversation_id, shorten(json.dumps(conversation and conversation.get("metadata")), 60))
        for conversation_id, conversation in sorted(
            conversations.items(), key=lambda item: natural_key(item[0])
        )
    ]
    print_table(out, "Final conversation states", ("conversation", "metadata"), cells, limit=limit)


def dead_letter_table(out: TextIO, letters: Sequence[Mapping[str, Any]], *, limit: int) -> None:
    cells = [
        (
            str(letter["message_id"])[:8],
            letter["_shape"],
            str(letter.get("category", EXHAUSTED)),
            str(letter.get("status") or "-"),
            str(letter.get("thread_id") or letter.get("conversation_id") or "-"),
            shorten(str(letter.get("error", "(original body, no envelope)")), 70),
        )
        for letter in letters
    ]
    header = ("message", "shape", "category", "status", "thread / conversation", "error")
    print_table(out, "Dead-letter queue", header, cells, limit=limit)
