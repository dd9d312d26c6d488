"""The terminal side of a replay: a one-line progress bar on stderr, and Ctrl-C handling."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, TextIO


class StopRequest:
    """Ctrl-C (SIGINT) during a replay: the first one asks to stop after the current message,
    a second one aborts at once (at worst leaving a duplicate: the copy is sent, the letter stays)."""

    def __init__(self, err: TextIO) -> None:
        self.requested = False
        self._err = err
        self._previous: Any = None
        self._installed = False

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
            self._installed = True
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._installed:
            signal.signal(signal.SIGINT, signal.SIG_DFL if self._previous is None else self._previous)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(
            "\ninterrupted: stopping after the current message (Ctrl-C again aborts at once)",
            file=self._err,
            flush=True,
        )


class Progress:
    """A one-line stderr progress bar, redrawn (carriage return) after every selected letter."""

    WIDTH = 30

    def __init__(self, stream: TextIO, *, total: int, enabled: bool) -> None:
        self.stream = stream
        self.total = max(total, 1)
        self.enabled = enabled
        self._drawn = False
        self._line = ""

    def update(self, *, done: int, replayed: int, failed: int) -> None:
        if not self.enabled:
            return
        self.total = max(self.total, done)
        filled = self.WIDTH * done // self.total
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        line = f"\rreplay [{bar}] {done}/{self.total} selected, {replayed} replayed, {failed} failed"
        if line == self._line:
            return
        self._line = line
        self.stream.write(line)
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
