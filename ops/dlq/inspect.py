"""``inspect``: read the whole DLQ without deleting and print it grouped by category, status, source
and thread, with counts and the newest reasons."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, TextIO

from ops.dlq.letters import SHAPES, Letter, classify, iso
from ops.dlq.scan import Scanner

EXIT_INCOMPLETE = 3
NOT_RELEASED = "warning: {} letter(s) stay invisible until their visibility timeout ends"


@dataclass
class Group:
    category: str
    status: int | None
    source: str
    thread_id: str | None
    conversation_id: str | None = None
    letters: list[Letter] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        newest_first = sorted(self.letters, key=lambda letter: letter.failed_at, reverse=True)
        reasons: list[str] = []
        for letter in newest_first:
            if letter.reason not in reasons:
                reasons.append(letter.reason)
        return {
            "category": self.category,
            "status": self.status,
            "source": self.source,
            "thread_id": self.thread_id,
            **({"conversation_id": self.conversation_id} if self.conversation_id is not None else {}),
            "count": len(self.letters),
            "newest": iso(newest_first[0].failed_at),
            "oldest": iso(newest_first[-1].failed_at),
            "reasons": reasons[:3],
            "distinct_reasons": len(reasons),
        }


def group_letters(letters: Sequence[Letter]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, int | None, str, str | None], Group] = {}
    for letter in letters:
        key = (letter.category, letter.status, letter.source, letter.target_key)
        group = Group(
            letter.category,
            letter.status,
            letter.source,
            letter.thread_id,
            conversation_id=letter.conversation_id,
        )
        groups.setdefault(key, group).letters.append(letter)
    rendered = [group.to_json() for group in groups.values()]
    rendered.sort(key=lambda group: group["newest"], reverse=True)
    rendered.sort(key=lambda group: group["count"], reverse=True)
    return rendered


def clip(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def render_table(groups: Sequence[dict[str, Any]]) -> str:
    header = ("CATEGORY", "STATUS", "SOURCE", "THREAD", "COUNT", "NEWEST", "NEWEST REASON")
    rows = [header]
    for group in groups:
        reason = clip(group["reasons"][0] if group["reasons"] else "", 120)
        if group["distinct_reasons"] > 1:
            reason += f" (+{group['distinct_reasons'] - 1} other reason(s))"
        status = "-" if group["status"] is None else str(group["status"])
        conversation = group.get("conversation_id")
        thread = clip(group["thread_id"] or (f"conversation {conversation}" if conversation else "-"), 40)
        rows.append(
            (group["category"], status, group["source"], thread, str(group["count"]), group["newest"], reason)
        )
    widths = [max(len(row[column]) for row in rows) for column in range(len(header) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:-1], widths, strict=True)) + "  " + row[-1]
        for row in rows
    )


def run_inspect(scanner: Scanner, *, as_json: bool, out: TextIO) -> int:
    """Exit status 0, or 3 when the read could not be completed (the reason is printed)."""
    depth = scanner.depth()
    letters: list[Letter] = []
    try:
        letters.extend(classify(message) for message in scanner.read())
    finally:
        not_released = scanner.release()
    shapes = {shape: sum(letter.shape == shape for letter in letters) for shape in SHAPES}
    if as_json:
        document = {
            "queue_url": scanner.queue_url,
            "read": len(letters),
            "approximate_messages": depth.total,
            "complete": scanner.incomplete is None,
            "incomplete_reason": scanner.incomplete,
            "not_released": not_released,
            "shapes": shapes,
            "groups": group_letters(letters),
            "messages": [letter.summary() for letter in letters],
        }
        print(json.dumps(document, indent=2, ensure_ascii=False), file=out)
    else:
        print(
            f"DLQ {scanner.queue_url}: read {len(letters)} letter(s), about {depth.total} in the queue",
            file=out,
        )
        print(render_table(group_letters(letters)) if letters else "(empty)", file=out)
        if letters:
            print("shapes: " + ", ".join(f"{name} {count}" for name, count in shapes.items()), file=out)
        if scanner.incomplete:
            print(f"INCOMPLETE: {scanner.incomplete}", file=out)
        if not_released:
            print(NOT_RELEASED.format(not_released), file=out)
    return EXIT_INCOMPLETE if scanner.incomplete else 0
