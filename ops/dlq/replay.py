"""``replay``: one run that sends selected dead letters back and deletes each one after its copy was
accepted.

A run reads first and replays after: it reads the whole DLQ (holding every letter, see ``scan``),
selects, orders the letters of each thread oldest first, and only then sends. So it only ever
considers letters that were in the DLQ when it started: the dead letters its own copies may produce
(an update that fails again) arrive after the read and are left for a later run, instead of being
replayed again and again. Letters the queue received after the run started are left too.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from ops.dlq.aws_errors import AWS_ERRORS, Subject, explain
from ops.dlq.inspect import EXIT_INCOMPLETE, NOT_RELEASED
from ops.dlq.letters import Letter, classify
from ops.dlq.routes import NoRoute
from ops.dlq.scan import Scanner
from ops.dlq.send import Rejected, Sender
from ops.dlq.supersede import SupersededCheck, is_superseded
from ops.dlq.terminal import Progress, StopRequest

EXIT_FAILED, EXIT_INTERRUPTED = 1, 130
# The server clock's Date header has whole seconds: a letter is "new" from one second after the start.
_START_RESOLUTION = timedelta(seconds=1)


@dataclass(frozen=True, kw_only=True)
class Selection:
    """Filters combine with AND; the values of one filter with OR; an empty filter matches all."""

    categories: frozenset[str] = frozenset()
    statuses: frozenset[int] = frozenset()
    thread_ids: frozenset[str] = frozenset()
    conversation_ids: frozenset[str] = frozenset()
    older_than: timedelta | None = None
    newer_than: timedelta | None = None

    def matches(self, letter: Letter, now: datetime) -> bool:
        age = now - letter.failed_at
        return (
            (not self.categories or letter.category in self.categories)
            and (not self.statuses or letter.status in self.statuses)
            and self._names_target(letter)
            and (self.older_than is None or age > self.older_than)
            and (self.newer_than is None or age < self.newer_than)
        )

    def _names_target(self, letter: Letter) -> bool:
        """``--thread-id`` and ``--conversation-id`` together are one filter: the letter's target is
        among the ids given (an empty filter matches all)."""
        if not self.thread_ids and not self.conversation_ids:
            return True
        return letter.thread_id in self.thread_ids or letter.conversation_id in self.conversation_ids


@dataclass(frozen=True, kw_only=True)
class ReplayOptions:
    selection: Selection
    limit: int | None = None
    dry_run: bool = False
    force: bool = False
    version: int | None = None  # given to letters without a trustworthy version
    force_unversioned: bool = False  # replay those without one: each copy counts as the newest update
    as_json: bool = False
    progress: bool = False


@dataclass
class ReplayReport:
    dry_run: bool
    scanned: int = 0
    arrived: int = 0  # received by the DLQ after the run started: left for a later run
    selected: int = 0
    replayed: int = 0
    superseded: int = 0
    kept: int = 0  # no route for the copy (or not replayable): kept in the DLQ
    failed: int = 0
    sent_not_deleted: int = 0
    interrupted: bool = False
    stopped_on_failure: bool = False
    incomplete: str | None = None
    left_in_dlq: int | None = None  # the queue's depth at the end
    not_released: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)

    def exit_status(self) -> int:
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.failed or self.kept or self.sent_not_deleted:
            return EXIT_FAILED
        return EXIT_INCOMPLETE if self.incomplete else 0

    def to_json(self) -> dict[str, Any]:
        document = {name: value for name, value in vars(self).items() if name != "messages"}
        return {**document, "complete": self.incomplete is None, "messages": self.messages}

    def summary(self) -> list[str]:
        done = (
            f"would replay {self.selected - self.kept - self.superseded}"
            if self.dry_run
            else f"replayed {self.replayed}"
        )
        left = "?" if self.left_in_dlq is None else str(self.left_in_dlq)
        lines = [
            f"{'DRY RUN: ' if self.dry_run else ''}read {self.scanned} (new since the start, left for "
            f"a later run: {self.arrived}), selected {self.selected}, {done}, superseded {self.superseded}, "
            f"kept {self.kept}, failed {self.failed}; left in the DLQ {left}"
        ]
        if self.sent_not_deleted:
            lines.append(f"sent but not deleted: {self.sent_not_deleted} (replayed twice if you rerun)")
        if self.stopped_on_failure:
            lines.append("stopped at the first failed send: the rest of the selection stays in the DLQ")
        if self.interrupted:
            lines.append("INTERRUPTED: the rest of the selection stays in the DLQ")
        if self.incomplete:
            lines.append(f"INCOMPLETE: {self.incomplete}")
        if self.not_released:
            lines.append(NOT_RELEASED.format(self.not_released))
        return lines


class ReplayRun:
    """Read, select, order, send-then-delete, release the rest, report (module docstring)."""

    def __init__(
        self,
        *,
        scanner: Scanner,
        sender: Sender,
        options: ReplayOptions,
        out: TextIO,
        err: TextIO,
        superseded: SupersededCheck = is_superseded,
    ) -> None:
        self.scanner = scanner
        self.sender = sender
        self.options = options
        self.out = out
        self.err = err
        self.superseded = superseded
        self.report = ReplayReport(dry_run=options.dry_run)

    def run(self) -> int:
        report = self.report
        started = self.scanner.server_time()
        with StopRequest(self.err) as stop:
            try:
                letters = self._read(started, stop)
                self._replay(letters, stop)
            except KeyboardInterrupt:
                report.interrupted = True
            finally:
                report.interrupted = report.interrupted or stop.requested
                report.not_released = self.scanner.release()  # letters not replayed stay in the DLQ
                report.left_in_dlq = self._depth()
        self._print_report()
        return report.exit_status()

    def _read(self, started: datetime, stop: StopRequest) -> list[Letter]:
        report, now = self.report, datetime.now(UTC)
        selected: list[Letter] = []
        for message in self.scanner.read(stop=lambda: stop.requested):
            letter = classify(message)
            report.scanned += 1
            if letter.sent_at >= started + _START_RESOLUTION:
                report.arrived += 1
            elif self.options.selection.matches(letter, now):
                selected.append(letter)
        report.incomplete = self.scanner.incomplete
        selected.sort(key=Letter.replay_order)
        return selected[: self.options.limit]

    def _replay(self, letters: list[Letter], stop: StopRequest) -> None:
        report = self.report
        report.selected = len(letters)
        progress = Progress(
            self.err, total=len(letters), enabled=self.options.progress and not self.options.dry_run
        )
        try:
            for done, letter in enumerate(letters, start=1):
                if stop.requested or report.stopped_on_failure:
                    break
                self.scanner.keep_held()
                self._process(letter)
                progress.update(done=done, replayed=report.replayed, failed=report.failed)
        finally:
            progress.close()

    def _process(self, letter: Letter) -> None:
        """One letter: skip it when superseded, keep it without a route, else send, and only when that
        worked, delete."""
        report = self.report
        trusted = self._trusted(letter)
        if trusted is None:
            report.kept += 1
            self._record(
                letter,
                "kept",
                f"{letter.unversioned}; its copy would count as the newest update of the thread and could "
                "overwrite newer state: kept (--version V gives it version V, --force-unversioned replays it "
                "as the newest)",
            )
            return
        letter = trusted
        if not self.options.force and self.superseded(letter):
            report.superseded += 1
            self._record(
                letter, "superseded", "a newer version of the thread was applied; kept (--force replays it)"
            )
            return
        try:
            where = self.sender.destination(letter)
        except NoRoute as problem:
            report.kept += 1
            self._record(letter, "kept", f"{problem}; kept in the DLQ")
            return
        if self.options.dry_run:
            self._record(letter, "would-replay", f"-> {where}")
            return
        try:
            copy_id = self.sender.send(letter)
        except (*AWS_ERRORS, Rejected, NoRoute) as error:
            report.failed += 1
            report.stopped_on_failure = True
            reason = (
                explain(error, Subject(where, "the destination")) if isinstance(error, AWS_ERRORS) else error
            )
            self._record(letter, "failed", f"send failed, kept in the DLQ: {reason}")
            return
        try:
            self.scanner.delete(letter.message_id)
        except AWS_ERRORS as error:
            report.sent_not_deleted += 1
            reason = explain(error, Subject(f"dead-letter queue {self.scanner.queue_url}", "--dlq-url"))
            self._record(
                letter, "sent-not-deleted", f"-> {where} as {copy_id}, but still in the DLQ: {reason}"
            )
            return
        report.replayed += 1
        self._record(letter, "replayed", f"-> {where} as {copy_id}")

    def _trusted(self, letter: Letter) -> Letter | None:
        """The letter with a version the function can order it by, or None when it has none and the
        operator gave neither ``--version`` nor ``--force-unversioned``."""
        if letter.unversioned is None or self.options.force_unversioned:
            return letter
        if self.options.version is None:
            return None
        return dataclasses.replace(
            letter, version=self.options.version, version_source="operator", unversioned=None
        )

    def _record(self, letter: Letter, result: str, detail: str) -> None:
        """The audit line of one letter (text), or its entry in the JSON report."""
        self.report.messages.append({**letter.summary(), "result": result, "detail": detail})
        if not self.options.as_json:
            status = "-" if letter.status is None else letter.status
            version = "" if letter.version is None else f"  v{letter.version}"
            print(
                f"{result:<16} {letter.message_id}  {letter.category}/{status}  {letter.source}"
                f"  {_target_label(letter)}{version}  {detail}",
                file=self.out,
            )

    def _depth(self) -> int | None:
        try:
            return self.scanner.depth().total
        except AWS_ERRORS:
            return None

    def _print_report(self) -> None:
        if self.options.as_json:
            print(json.dumps(self.report.to_json(), indent=2, ensure_ascii=False), file=self.out)
            return
        for line in self.report.summary():
            print(line, file=self.out)


def _target_label(letter: Letter) -> str:
    if letter.conversation_id is not None:
        return f"conversation {letter.conversation_id}"
    return f"thread {letter.thread_id or '-'}"
