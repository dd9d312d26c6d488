"""The README's run command: the whole loop on this machine, through moto, the poller and the stand-in."""

from __future__ import annotations

import contextlib
import io
import os
from pathlib import Path

from devstack.run import main


def test_local_run_settles_every_message_and_restores_the_environment(tmp_path: Path) -> None:
    # Given the environment before the run
    before = dict(os.environ)
    out = io.StringIO()

    # When the runner sends the samples plus 60 generated updates (one to a thread that is gone)
    with contextlib.redirect_stdout(out):
        code = main(["--count", "60", "--threads", "7", "--log-file", str(tmp_path / "function.log")])

    # Then every message is settled, the summary shows each outcome, and nothing it set is left behind
    text = out.getvalue()
    assert code == 0, text
    assert "still queued" not in text
    assert text.count("  applied  ") >= 60
    assert "dead-lettered (rejected, 404)" in text
    assert "dead-lettered (validation)" in text
    # including the sample put on the EventBridge bus, delivered by its rule to the source queue
    [bus_row] = [line for line in text.splitlines() if "(EventBridge bus: events/eventbridge.json)" in line]
    assert "  applied  " in bus_row
    assert "Dead-letter queue (5)" in text
    assert '"UpdatesApplied"' in (tmp_path / "function.log").read_text()  # metrics went to the log file
    assert dict(os.environ) == before
