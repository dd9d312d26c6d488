"""The README's run command: the whole loop locally, through moto, the poller and the stand-in."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
from pathlib import Path

import pytest

from devstack.run import main


def run_locally(*args: str, log_file: Path) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main([*args, "--log-file", str(log_file)])
    return code, out.getvalue()


def table(text: str, title: str) -> list[str]:
    """The data rows of the table titled ``title (N)`` (after its header and dashes)."""
    rows = []
    for line in text.split(f"\n{title} (", 1)[1].splitlines()[3:]:
        if not line or line.startswith("…"):
            break
        rows.append(line)
    return rows


def test_local_run_settles_every_message_and_restores_the_environment(tmp_path: Path) -> None:
    # Given the environment before the run
    before = dict(os.environ)

    # When the runner sends the samples plus 60 generated updates over 12 threads (one to a gone thread)
    code, text = run_locally("--count", "60", "--threads", "12", "--rows", "100", log_file=tmp_path / "f.log")

    # Then every message is settled and the totals say how: the 3 valid thread samples, the 2 valid
    # conversation samples, 59 generated updates and the bus event applied (or superseded by a newer
    # one for the same thread); 6 invalid samples, the gone thread and the gone conversation
    # dead-lettered; nothing retried
    assert code == 0, text
    totals = re.search(
        r"Totals: 73 messages: (\d+) applied, (\d+) superseded, 8 dead-lettered "
        r"\(rejected 2, validation 6\), 0 still queued; 0 hand-backs",
        text,
    )
    assert totals is not None, text
    assert sum(map(int, totals.groups())) == 65
    assert text.count("dead-lettered (rejected, 404)") == 2
    # the gone conversation's letter names it, with the upstream's message
    [gone] = [row for row in table(text, "Dead-letter queue") if " conv_gone " in row]
    assert "rejected    404" in gone
    assert "HTTP 404: Conversation with id 'conv_gone' not found." in gone
    # conversations beside threads: both conversation samples applied, each with its metadata
    conversations = {row.split()[0]: row for row in table(text, "Final conversation states")}
    assert sorted(conversations) == ["conv_abc123", "conv_def456", "conv_gone"]
    assert '"migrated_from": "thread_def456"' in conversations["conv_def456"]
    assert conversations["conv_gone"].split()[1] == "null"
    assert "EventBridge direct invoke (events/eventbridge-conversation.json): applied" in text
    # including the sample put on the EventBridge bus, delivered by its rule to the source queue
    [bus_row] = [line for line in text.splitlines() if "(EventBridge bus: events/eventbridge.json)" in line]
    assert "  applied  " in bus_row or "  superseded  " in bus_row
    assert "Dead-letter queue (8)" in text
    # thread states sort naturally: thread_gen_2 before thread_gen_10
    generated = [
        row.split()[0] for row in table(text, "Final thread states") if row.startswith("thread_gen_")
    ]
    assert generated == [f"thread_gen_{n}" for n in range(12)]
    assert '"UpdatesApplied"' in (tmp_path / "f.log").read_text()  # metrics went to the log file
    assert dict(os.environ) == before


def test_fail_rate_shows_retries_and_the_redrive_and_long_tables_say_how_many_more(tmp_path: Path) -> None:
    # Given Portkey failing 80 % of the calls for generated updates, and a redrive after 2 receives
    args = [
        "--count",
        "40",
        "--threads",
        "4",
        "--fail-rate",
        "0.8",
        "--max-receive-count",
        "2",
        "--rows",
        "8",
    ]

    # When the runner runs
    code, text = run_locally(*args, log_file=tmp_path / "f.log")

    # Then it says what it ran with, retried (hand-backs), redrove what failed twice to the DLQ as
    # exhausted with the last error as the reason, and shows 8 rows per table plus "… N more" (the 7
    # samples not applied come first, then the generated updates that were not)
    assert code == 0, text
    assert "max receive count 2, fail rate 0.8 (seed 0, " in text
    assert "MAX_ATTEMPTS 3" in text
    totals = re.search(
        r"Totals: 53 messages: (\d+) applied, (\d+) superseded, (\d+) dead-lettered \(exhausted (\d+), "
        r"rejected 1, validation 6\), 0 still queued; (\d+) hand-backs",
        text,
    )
    assert totals is not None, text
    applied, superseded, dead, exhausted, hand_backs = map(int, totals.groups())
    assert exhausted >= 1
    assert hand_backs >= 2 * exhausted  # each exhausted message was handed back on both of its receives
    assert applied + superseded + dead == 53
    # the first exhausted row names its last error: usually the scripted 503, but on a busy machine
    # the last receive may have been handed back for another reason (the thread held, a lane blocked)
    assert re.search(r"dead-lettered \(exhausted\)\s+2\s+2 receives, last: \w", text), text
    assert len(table(text, "Messages")) == 8
    assert f"… {53 - 8} more (--rows N shows more)" in text


@pytest.mark.parametrize(
    ("argument", "value", "expected"),
    [
        ("--threads", "0", "outside 1..10000"),
        ("--batch-size", "0", "outside 1..10000"),
        ("--max-receive-count", "0", "outside 1..1000"),
        ("--max-receive-count", "1001", "outside 1..1000"),
        ("--window", "301", "outside 0..300"),
        ("--fail-rate", "1.5", "outside 0..1"),
        ("--count", "-1", "outside 0..100000"),
        ("--threads", "many", "'many' is not a valid int"),
    ],
)
def test_arguments_out_of_range_are_refused_before_anything_starts(
    argument: str, value: str, expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        main([argument, value])
    assert exited.value.code == 2
    assert expected in capsys.readouterr().err


def test_live_with_a_misconfigured_secret_exits_non_zero_and_shows_the_configuration_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given --live with a secret that names no routing mode (a loopback URL: nothing leaves the machine)
    secret_file = tmp_path / "secret.json"
    secret_file.write_text(json.dumps({"api_key": "pk-placeholder"}))
    monkeypatch.setenv("PORTKEY_BASE_URL", "http://127.0.0.1:9/v1")

    # When the runner runs
    code, text = run_locally("--live", "--secret-file", str(secret_file), log_file=tmp_path / "f.log")

    # Then nothing was applied and it exits 1; the 6 invalid samples are dead-lettered as invalid, and
    # each valid one (4 thread and 3 conversation updates) names the configuration error: handed back
    # on each of its 3 receives until the redrive policy moved it to the DLQ (exhausted)
    assert code == 1, text
    assert (
        "Totals: 13 messages: 0 applied, 0 superseded, 13 dead-lettered (exhausted 7, validation 6), "
        "0 still queued; 21 hand-backs"
    ) in text
    exhausted = [row for row in table(text, "Messages") if "(exhausted)" in row]
    assert len(exhausted) == 7
    assert all(
        "3 receives, last: configuration error: Portkey secret: no routing mode" in row for row in exhausted
    )
    for name in ("eventbridge.json", "eventbridge-conversation.json"):
        assert f"EventBridge direct invoke (events/{name}): ConfigurationError: Portkey secret" in text
