"""``python -m ops.dlq inspect`` against moto in server mode: reads everything, deletes nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from ops.dlq.cli import main
from tests.conftest import AwsResources
from tests.tooling.dlq_support import REPO_ROOT, Dlq, ago, counts, eventbridge_event, run, run_json, update
from thread_updater.deadletter import Category, DeadLetter, DeadLetterQueue
from thread_updater.deadline import Deadline


def test_inspect_envelopes_groups_without_deleting(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given rejected and validation envelopes, when inspect runs, then it prints them grouped by
    category/status/source/thread with counts and the newest reason, and every letter is visible again."""
    dlq.envelope("thread_gone", error="HTTP 404: old reason", failed_at=ago(hours=2))
    dlq.envelope(
        "thread_gone", error="HTTP 404: No thread found with id 'thread_gone'.", failed_at=ago(minutes=1)
    )
    dlq.envelope("thread_gone", error="HTTP 404: middle reason", failed_at=ago(hours=1))
    dlq.envelope(
        None,
        category=Category.VALIDATION,
        status=None,
        error="body is not valid JSON: Expecting value",
        payload="not json",
    )

    code, out = run(capsys, "inspect", "--dlq-url", aws.dlq_url)

    assert code == 0
    lines = out.splitlines()
    assert "read 4 letter(s)" in lines[0]
    assert lines[1].split()[:6] == ["CATEGORY", "STATUS", "SOURCE", "THREAD", "COUNT", "NEWEST"]
    assert lines[2].split()[:5] == ["rejected", "404", "sqs", "thread_gone", "3"]
    assert "No thread found with id 'thread_gone'." in lines[2]
    assert "(+2 other reason(s))" in lines[2]
    assert lines[3].split()[:5] == ["validation", "-", "sqs", "-", "1"]
    assert "shapes: envelope 4, redriven 0, destination 0" in out
    assert counts(aws.sqs, aws.dlq_url) == (4, 0)  # visible again at once, nothing deleted

    code, document = run_json(capsys, "inspect", "--dlq-url", aws.dlq_url)

    assert code == 0
    assert (document["read"], document["complete"]) == (4, True)
    rejected, validation = document["groups"]
    assert (rejected["category"], rejected["status"], rejected["source"], rejected["thread_id"]) == (
        "rejected",
        404,
        "sqs",
        "thread_gone",
    )
    assert rejected["count"] == 3
    assert rejected["reasons"] == [
        "HTTP 404: No thread found with id 'thread_gone'.",
        "HTTP 404: middle reason",
        "HTTP 404: old reason",
    ]
    assert (validation["category"], validation["status"], validation["thread_id"]) == (
        "validation",
        None,
        None,
    )
    assert {message["shape"] for message in document["messages"]} == {"envelope"}
    assert all(message["receive_count"] >= 1 for message in document["messages"])
    assert counts(aws.sqs, aws.dlq_url) == (4, 0)


def test_inspect_redriven_raw_bodies(aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    """Given raw bodies moved by the redrive policy, then they are category `exhausted`, with the
    thread id parsed from the body when it is an update or an EventBridge event, else none."""
    dlq.redriven(update("thread_slow"))
    dlq.redriven(json.dumps(eventbridge_event("thread_evt")))
    dlq.redriven("not json at all")

    code, out = run(capsys, "inspect", "--dlq-url", aws.dlq_url)
    assert code == 0
    table = {tuple(line.split()[:5]) for line in out.splitlines()[2:5]}
    assert table == {
        ("exhausted", "-", "sqs", "thread_slow", "1"),
        ("exhausted", "-", "sqs", "thread_evt", "1"),
        ("exhausted", "-", "sqs", "-", "1"),
    }
    assert "redrive policy" in out

    code, document = run_json(capsys, "inspect", "--dlq-url", aws.dlq_url)
    assert code == 0
    assert document["shapes"] == {"envelope": 0, "redriven": 3, "destination": 0}
    assert {group["thread_id"] for group in document["groups"]} == {"thread_slow", "thread_evt", None}
    assert counts(aws.sqs, aws.dlq_url) == (3, 0)


def test_inspect_destination_records_show_source_and_parsed_status(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given on-failure destination records whose error message carries the HTTP status after a long
    update id, then they are `async-failure` from source eventbridge with the status in its column and
    the reason starting at the status, next to sqs letters that say sqs."""
    long_id = "e" * 36
    dlq.destination("thread_async", error=f"update {long_id} not applied: HTTP 503: upstream unavailable")
    dlq.destination("thread_async", error=f"update {long_id} not applied: HTTP 503: timeout")
    dlq.envelope("thread_sqs")

    code, out = run(capsys, "inspect", "--dlq-url", aws.dlq_url)

    assert code == 0
    row = next(line for line in out.splitlines() if line.startswith("async-failure"))
    assert row.split()[:5] == ["async-failure", "503", "eventbridge", "thread_async", "2"]
    assert "HTTP 503: " in row
    assert "(RetriesExhausted)" in row
    assert next(line for line in out.splitlines() if line.startswith("rejected")).split()[2] == "sqs"

    code, document = run_json(capsys, "inspect", "--dlq-url", aws.dlq_url)
    group = next(group for group in document["groups"] if group["category"] == "async-failure")
    assert (group["source"], group["status"], group["distinct_reasons"]) == ("eventbridge", 503, 2)
    assert counts(aws.sqs, aws.dlq_url) == (3, 0)


def test_inspect_empty_queue_and_missing_url(
    aws: AwsResources, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an empty DLQ it says so; given no DLQ URL at all it exits 2 naming the option."""
    code, out = run(capsys, "inspect", "--dlq-url", aws.dlq_url)
    assert code == 0
    assert "(empty)" in out

    monkeypatch.delenv("DLQ_URL", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect"])
    assert exit_info.value.code == 2
    assert "--dlq-url" in capsys.readouterr().err


def test_inspect_help_mentions_receive_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "--help"])
    assert exit_info.value.code == 0
    assert "ApproximateReceiveCount" in capsys.readouterr().out


def test_inspect_as_module_from_the_repository_root(aws: AwsResources, dlq: Dlq) -> None:
    """Given DLQ_URL in the environment and no PYTHONPATH, when `python -m ops.dlq inspect --json` runs
    from the repository root (default long-poll wait), then it finds the function's package and prints
    the JSON summary."""
    dlq.envelope("thread_sub")
    dlq.destination("thread_sub_async")
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    env["DLQ_URL"] = aws.dlq_url

    completed = subprocess.run(
        [sys.executable, "-m", "ops.dlq", "inspect", "--json"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        timeout=60,
        check=False,
    )

    assert completed.returncode == 0, completed.stderr
    document = json.loads(completed.stdout)
    assert document["queue_url"] == aws.dlq_url
    assert {(g["category"], g["thread_id"]) for g in document["groups"]} == {
        ("rejected", "thread_sub"),
        ("async-failure", "thread_sub_async"),
    }
    assert counts(aws.sqs, aws.dlq_url) == (2, 0)


def fifo_dlq(aws: AwsResources) -> str:
    return aws.sqs.create_queue(
        QueueName=f"dlq-{uuid.uuid4().hex[:10]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]


def test_fifo_dlq_validation_letters_are_all_read(
    aws: AwsResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given 25 validation letters written by the function to a FIFO DLQ (thread id or not), when
    inspect runs, then all 25 are read: each invalid message has a message group of its own, so a
    held letter hides none behind it."""
    url = fifo_dlq(aws)
    sender = DeadLetterQueue(url)
    for index in range(25):
        letter = DeadLetter(
            category=Category.VALIDATION,
            error="invalid update: metadata: Input should be a valid dictionary",
            status=None,
            thread_id=None if index % 2 else "thread_same",
            source="sqs",
            message_id=str(uuid.uuid4()),
            payload=json.dumps({"thread_id": "thread_same", "metadata": index}),
            attempts=0,
        )
        sender.send(letter, deadline=Deadline.after(60))

    code, document = run_json(capsys, "inspect", "--dlq-url", url)

    assert document["read"] == 25
    assert (code, document.get("complete")) == (0, True)
    assert counts(aws.sqs, url) == (25, 0)


def test_fifo_dlq_blocked_group_is_reported_incomplete(
    aws: AwsResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given 25 letters in one FIFO message group (as letters written before per-letter groups were),
    when inspect runs, then it reads what SQS hands out, says the rest waits behind held letters of the
    same group, and exits 3 instead of reporting a complete read."""
    url = fifo_dlq(aws)
    for index in range(25):
        aws.sqs.send_message(
            QueueUrl=url,
            MessageBody=json.dumps(
                {
                    "category": "validation",
                    "error": "x",
                    "source": "sqs",
                    "message_id": str(index),
                    "payload": "not json",
                    "status": None,
                    "thread_id": None,
                    "attempts": 0,
                }
            ),
            MessageGroupId="invalid",
            MessageDeduplicationId=str(index),
        )

    code, out = run(capsys, "inspect", "--dlq-url", url)

    assert code == 3
    assert "INCOMPLETE" in out
    assert "same FIFO message group" in out
    assert counts(aws.sqs, url) == (25, 0)
