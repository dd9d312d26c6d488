"""``python -m thread_updater dlq inspect|replay`` against moto in server mode.

The dead-letter queue is filled with the three shapes it can hold: the function's own envelope
(written by the real ``DeadLetterQueue``), a raw body moved there by a real SQS redrive policy,
and a Lambda on-failure destination record. The CLI runs in-process through ``main(argv)``
and once as ``python -m thread_updater`` in a subprocess.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from mypy_boto3_sqs import SQSClient

from tests.conftest import AwsResources
from thread_updater.__main__ import main
from thread_updater.deadletter import Category, DeadLetter, DeadLetterQueue, Source

REPO_ROOT = Path(__file__).resolve().parents[2]
EVENT_SOURCE = "com.example.threads"
FAST = ["--wait-seconds", "0"]  # moto answers every receive completely; no long poll needed


# --------------------------------------------------------------------------- helpers


def queue_arn(sqs: SQSClient, url: str) -> str:
    return sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]


def counts(sqs: SQSClient, url: str) -> tuple[int, int]:
    """(visible, in flight) messages of a queue."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def drain(sqs: SQSClient, url: str) -> list[dict[str, Any]]:
    """Every message of a queue (received and deleted): body plus system attributes."""
    found: list[dict[str, Any]] = []
    for _ in range(100):
        messages = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=300,
            MessageSystemAttributeNames=["All"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not messages:
            break
        for message in messages:
            found.append(dict(message))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return found


def bodies(sqs: SQSClient, url: str) -> list[str]:
    return sorted(message["Body"] for message in drain(sqs, url))


def update(thread_id: str, **metadata: str) -> str:
    return json.dumps({"thread_id": thread_id, "metadata": metadata or {"k": "v"}})


def eventbridge_event(thread_id: str, **metadata: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((REPO_ROOT / "events" / "eventbridge.json").read_text())
    event["id"] = str(uuid.uuid4())
    event["detail"] = {"thread_id": thread_id, "metadata": metadata or {"k": "v"}}
    return event


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).isoformat(timespec="milliseconds")


@dataclass
class Dlq:
    """Puts each shape of dead letter into this test's DLQ the way production does."""

    aws: AwsResources

    def __post_init__(self) -> None:
        self.sender = DeadLetterQueue(self.aws.dlq_url)  # the function's own sender

    def envelope(
        self,
        thread_id: str | None,
        *,
        category: Category = Category.REJECTED,
        status: int | None = 404,
        error: str = "HTTP 404: No thread found.",
        source: Source = "sqs",
        payload: str | None = None,
        failed_at: str = "",
    ) -> None:
        if payload is None:
            payload = (
                json.dumps(eventbridge_event(thread_id or "x"))
                if source == "eventbridge"
                else update(thread_id or "x")
            )
        letter = DeadLetter(
            category=category,
            error=error,
            status=status,
            thread_id=thread_id,
            source=source,
            message_id=str(uuid.uuid4()),
            payload=payload,
            attempts=1,
            failed_at=failed_at,
        )
        self.sender.send(letter, deadline=time.monotonic() + 60)

    def redriven(self, body: str) -> None:
        """A raw body moved by the source queue's redrive policy (maxReceiveCount 1)."""
        sqs = self.aws.sqs
        policy = {"deadLetterTargetArn": queue_arn(sqs, self.aws.dlq_url), "maxReceiveCount": "1"}
        sqs.set_queue_attributes(
            QueueUrl=self.aws.queue_url, Attributes={"RedrivePolicy": json.dumps(policy)}
        )
        sqs.send_message(
            QueueUrl=self.aws.queue_url,
            MessageBody=body,
            MessageAttributes={"producer": {"DataType": "String", "StringValue": "orders"}},
        )
        for _ in range(3):  # the first receive counts 1, the next moves it to the DLQ
            sqs.receive_message(QueueUrl=self.aws.queue_url, VisibilityTimeout=0)
        assert counts(sqs, self.aws.queue_url) == (0, 0)

    def destination(self, thread_id: str, error: str = "update not applied: HTTP 503") -> dict[str, Any]:
        """A Lambda on-failure destination record for a failed asynchronous EventBridge invoke."""
        request = eventbridge_event(thread_id)
        record = {
            "version": "1.0",
            "timestamp": ago(minutes=5).replace("+00:00", "Z"),
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": "arn:aws:lambda:us-east-1:123456789012:function:modify-thread:$LATEST",
                "condition": "RetriesExhausted",
                "approximateInvokeCount": 3,
            },
            "requestPayload": request,
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled",
            },
            "responsePayload": {"errorMessage": error, "errorType": "UpdateNotApplied", "stackTrace": []},
        }
        self.aws.sqs.send_message(QueueUrl=self.aws.dlq_url, MessageBody=json.dumps(record))
        return request


@pytest.fixture
def dlq(aws: AwsResources) -> Dlq:
    return Dlq(aws)


@dataclass
class Bus:
    name: str
    capture_url: str


@pytest.fixture
def bus(aws: AwsResources) -> Bus:
    """An event bus whose ModifyThread rule targets a capture queue."""
    suffix = uuid.uuid4().hex[:10]
    events = boto3.client("events")
    name = f"threads-{suffix}"
    events.create_event_bus(Name=name)
    capture_url = aws.sqs.create_queue(QueueName=f"capture-{suffix}")["QueueUrl"]
    events.put_rule(
        Name="modify-thread",
        EventBusName=name,
        EventPattern=json.dumps({"source": [EVENT_SOURCE], "detail-type": ["ModifyThread"]}),
    )
    events.put_targets(
        Rule="modify-thread",
        EventBusName=name,
        Targets=[{"Id": "capture", "Arn": queue_arn(aws.sqs, capture_url)}],
    )
    return Bus(name, capture_url)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(["dlq", *argv, *FAST])
    return code, capsys.readouterr().out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    code, out = run(capsys, *argv, "--json")
    document: dict[str, Any] = json.loads(out)
    return code, document


# --------------------------------------------------------------------------- inspect


def test_inspect_envelopes_groups_without_deleting(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given rejected and validation envelopes, when inspect runs, then it prints them grouped by
    category/status/thread with counts and the newest reason, and every message is visible again."""
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
    assert "read 4 message(s)" in lines[0]
    assert lines[1].split()[:5] == ["CATEGORY", "STATUS", "THREAD", "COUNT", "NEWEST"]
    assert lines[2].split()[:4] == ["rejected", "404", "thread_gone", "3"]
    assert "No thread found with id 'thread_gone'." in lines[2]
    assert "(+2 other reason(s))" in lines[2]
    assert lines[3].split()[:4] == ["validation", "-", "-", "1"]
    assert "shapes: envelope 4, redriven 0, destination 0" in out
    assert counts(aws.sqs, aws.dlq_url) == (4, 0)  # visible again at once, nothing deleted

    code, document = run_json(capsys, "inspect", "--dlq-url", aws.dlq_url)

    assert code == 0
    assert document["read"] == 4
    rejected, validation = document["groups"]
    assert rejected["count"] == 3
    assert (rejected["category"], rejected["status"], rejected["thread_id"]) == (
        "rejected",
        404,
        "thread_gone",
    )
    assert rejected["reasons"] == [
        "HTTP 404: No thread found with id 'thread_gone'.",
        "HTTP 404: middle reason",
        "HTTP 404: old reason",
    ]
    assert rejected["sources"] == ["sqs"]
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
    table = {tuple(line.split()[:4]) for line in out.splitlines()[2:5]}
    assert table == {
        ("exhausted", "-", "thread_slow", "1"),
        ("exhausted", "-", "thread_evt", "1"),
        ("exhausted", "-", "-", "1"),
    }
    assert "redrive policy" in out

    code, document = run_json(capsys, "inspect", "--dlq-url", aws.dlq_url)
    assert code == 0
    assert document["shapes"] == {"envelope": 0, "redriven": 3, "destination": 0}
    assert {group["thread_id"] for group in document["groups"]} == {"thread_slow", "thread_evt", None}
    assert {message["source"] for message in document["messages"]} == {"sqs"}
    assert counts(aws.sqs, aws.dlq_url) == (3, 0)


def test_inspect_destination_records(aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    """Given Lambda on-failure destination records, then they are category `async-failure`,
    source eventbridge, with the thread id from the event's detail and the error as reason."""
    dlq.destination("thread_async", error="update e-1 not applied: HTTP 503: upstream unavailable")
    dlq.destination("thread_async", error="update e-2 not applied: timeout")

    code, out = run(capsys, "inspect", "--dlq-url", aws.dlq_url)
    assert code == 0
    row = out.splitlines()[2]
    assert row.split()[:4] == ["async-failure", "-", "thread_async", "2"]
    assert "RetriesExhausted: UpdateNotApplied: update e-" in row

    code, document = run_json(capsys, "inspect", "--dlq-url", aws.dlq_url)
    (group,) = document["groups"]
    assert group["sources"] == ["eventbridge"]
    assert group["distinct_reasons"] == 2
    assert document["shapes"]["destination"] == 2
    assert counts(aws.sqs, aws.dlq_url) == (2, 0)


def test_inspect_empty_queue_and_missing_url(
    aws: AwsResources, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an empty DLQ it says so; given no DLQ URL at all it exits 2 naming the option."""
    code, out = run(capsys, "inspect", "--dlq-url", aws.dlq_url)
    assert code == 0
    assert "(empty)" in out

    monkeypatch.delenv("DLQ_URL", raising=False)
    assert main(["dlq", "inspect"]) == 2
    assert "--dlq-url" in capsys.readouterr().err


def test_inspect_help_mentions_receive_count(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["dlq", "inspect", "--help"])
    assert exit_info.value.code == 0
    assert "ApproximateReceiveCount" in capsys.readouterr().out


def test_inspect_as_module_subprocess(aws: AwsResources, dlq: Dlq) -> None:
    """Given DLQ_URL in the environment, when `python -m thread_updater dlq inspect --json` runs
    with PYTHONPATH=src (default long-poll wait), then it prints the JSON summary."""
    dlq.envelope("thread_sub")
    dlq.destination("thread_sub_async")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src"), "DLQ_URL": aws.dlq_url}

    completed = subprocess.run(
        [sys.executable, "-m", "thread_updater", "dlq", "inspect", "--json"],
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


# --------------------------------------------------------------------------- replay


def test_replay_by_category_sends_payloads_and_deletes_only_those(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given rejected, validation and redriven letters, when `replay --category rejected` runs,
    then exactly the rejected payloads reach the source queue, unchanged, and only they leave the DLQ."""
    dlq.redriven(update("thread_raw"))
    payloads = [update("thread_a", n="1"), update("thread_b", n="2")]
    for payload in payloads:
        dlq.envelope(json.loads(payload)["thread_id"], payload=payload)
    dlq.envelope(None, category=Category.VALIDATION, status=None, payload="not json")

    code, report = run_json(
        capsys,
        "replay",
        "--dlq-url",
        aws.dlq_url,
        "--source-queue-url",
        aws.queue_url,
        "--category",
        "rejected",
    )

    assert code == 0
    assert (report["scanned"], report["selected"], report["replayed"], report["left_in_dlq"]) == (4, 2, 2, 2)
    assert bodies(aws.sqs, aws.queue_url) == sorted(payloads)
    left = [message["Body"] for message in drain(aws.sqs, aws.dlq_url)]
    assert sorted(left) == sorted(
        [update("thread_raw"), next(body for body in left if body != update("thread_raw"))]
    )
    assert any(
        json.loads(body).get("category") == "validation" for body in left if body != update("thread_raw")
    )


def test_replay_redriven_body_as_is_with_attributes(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a raw redriven body, when `replay --category exhausted` runs, then the same body and
    message attributes go back to the source queue."""
    body = update("thread_raw", stage="x")
    dlq.redriven(body)

    code, out = run(
        capsys,
        "replay",
        "--dlq-url",
        aws.dlq_url,
        "--source-queue-url",
        aws.queue_url,
        "--category",
        "exhausted",
    )

    assert code == 0, out
    assert "replayed 1, failed 0" in out
    (message,) = drain(aws.sqs, aws.queue_url)
    assert message["Body"] == body
    assert message["MessageAttributes"]["producer"]["StringValue"] == "orders"
    assert counts(aws.sqs, aws.dlq_url) == (0, 0)


def test_replay_by_thread_and_status(aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    """Given letters for several threads and statuses, then --thread-id and --status select
    (repeated values are OR-ed, different filters AND-ed)."""
    dlq.envelope("thread_x", status=404, payload=update("thread_x", s="404"))
    dlq.envelope("thread_x", status=409, error="HTTP 409: conflict", payload=update("thread_x", s="409"))
    dlq.envelope("thread_y", status=404, payload=update("thread_y", s="404"))
    dlq.envelope("thread_z", status=422, error="HTTP 422", payload=update("thread_z", s="422"))
    base = ["replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url]

    code, report = run_json(capsys, *base, "--thread-id", "thread_x", "--status", "404")
    assert code == 0
    assert report["replayed"] == 1
    assert bodies(aws.sqs, aws.queue_url) == [update("thread_x", s="404")]

    code, report = run_json(capsys, *base, "--status", "409", "--status", "422")
    assert code == 0
    assert report["replayed"] == 2
    assert bodies(aws.sqs, aws.queue_url) == sorted(
        [update("thread_x", s="409"), update("thread_z", s="422")]
    )
    (left,) = drain(aws.sqs, aws.dlq_url)
    assert json.loads(left["Body"])["thread_id"] == "thread_y"


def test_replay_age_filters(aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]) -> None:
    """Given letters that failed 3 hours and 5 minutes ago, then --older-than/--newer-than pick by
    failure time, and a malformed age is a usage error."""
    dlq.envelope("thread_old", payload=update("thread_old"), failed_at=ago(hours=3))
    dlq.envelope("thread_new", payload=update("thread_new"), failed_at=ago(minutes=5))
    base = ["replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url, "--dry-run"]

    _, report = run_json(capsys, *base, "--older-than", "2h")
    assert [m["thread_id"] for m in report["messages"]] == ["thread_old"]
    _, report = run_json(capsys, *base, "--newer-than", "15m")
    assert [m["thread_id"] for m in report["messages"]] == ["thread_new"]
    _, report = run_json(capsys, *base, "--older-than", "1m", "--newer-than", "1d")
    assert sorted(m["thread_id"] for m in report["messages"]) == ["thread_new", "thread_old"]

    with pytest.raises(SystemExit) as exit_info:
        main(["dlq", *base, "--older-than", "15 minutes"])
    assert exit_info.value.code == 2
    assert "invalid age" in capsys.readouterr().err


def test_replay_eventbridge_letters_are_re_put_to_the_bus(
    aws: AwsResources, dlq: Dlq, bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given an EventBridge envelope and a destination record, when replayed with --event-bus,
    then each original event (source, detail-type, detail) is put on the bus, where the rule
    delivers it, and both leave the DLQ."""
    event = eventbridge_event("thread_evt", stage="reviewed")
    dlq.envelope("thread_evt", source="eventbridge", payload=json.dumps(event))
    request = dlq.destination("thread_async")

    code, report = run_json(capsys, "replay", "--dlq-url", aws.dlq_url, "--event-bus", bus.name)

    assert code == 0, report
    assert report["replayed"] == 2
    delivered = [json.loads(message["Body"]) for message in drain(aws.sqs, bus.capture_url)]
    assert sorted(d["detail"]["thread_id"] for d in delivered) == ["thread_async", "thread_evt"]
    for original in (event, request):
        (copy,) = [d for d in delivered if d["detail"] == original["detail"]]
        assert copy["source"] == EVENT_SOURCE
        assert copy["detail-type"] == "ModifyThread"
    assert counts(aws.sqs, aws.dlq_url) == (0, 0)


def test_replay_without_bus_skips_eventbridge_letters(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given an EventBridge letter and no bus configured, then it is skipped and kept (exit
    status 1), while an SQS letter is still replayed."""
    monkeypatch.delenv("EVENT_BUS_NAME", raising=False)
    dlq.destination("thread_async")
    dlq.envelope("thread_sqs", payload=update("thread_sqs"))

    code, out = run(capsys, "replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url)

    assert code == 1  # not everything selected was replayed
    assert "skipped" in out
    assert "no event bus" in out
    assert bodies(aws.sqs, aws.queue_url) == [update("thread_sqs")]
    assert counts(aws.sqs, aws.dlq_url) == (1, 0)


def test_dry_run_changes_nothing(
    aws: AwsResources, dlq: Dlq, bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given letters of every shape, when `replay --dry-run` runs, then it lists what would be
    replayed and where, and no queue or bus receives anything; the DLQ is unchanged and visible."""
    dlq.envelope("thread_a", payload=update("thread_a"))
    dlq.redriven(update("thread_raw"))
    dlq.destination("thread_async")

    code, out = run(
        capsys,
        "replay",
        "--dlq-url",
        aws.dlq_url,
        "--source-queue-url",
        aws.queue_url,
        "--event-bus",
        bus.name,
        "--dry-run",
    )

    assert code == 0
    assert out.count("would-replay") == 3
    assert f"-> queue {aws.queue_url}" in out
    assert f"-> bus {bus.name}" in out
    assert "DRY RUN: scanned 3, selected 3, would replay 3" in out
    assert counts(aws.sqs, aws.dlq_url) == (3, 0)
    assert counts(aws.sqs, aws.queue_url) == (0, 0)
    assert counts(aws.sqs, bus.capture_url) == (0, 0)


def test_failed_send_keeps_the_letter(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a source queue URL that does not exist, when replay runs, then the send fails, the
    replay stops there with exit status 1, and every letter is still in the DLQ, visible."""
    for index in range(3):
        dlq.envelope(f"thread_{index}", payload=update(f"thread_{index}"))
    missing = aws.queue_url + "-does-not-exist"

    code, report = run_json(capsys, "replay", "--dlq-url", aws.dlq_url, "--source-queue-url", missing)

    assert code == 1
    assert (report["replayed"], report["failed"], report["stopped_on_failure"]) == (0, 1, True)
    (failed,) = [m for m in report["messages"] if m["result"] == "failed"]
    assert "QueueDoesNotExist" in failed["detail"]
    assert counts(aws.sqs, aws.dlq_url) == (3, 0)


def test_limit_replays_at_most_n_and_loses_nothing(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given 25 letters, when `replay --limit 10` runs, then 10 are in the source queue and 15 in
    the DLQ (25 in all), and a second run with --limit 100 moves the rest."""
    total = 25
    for index in range(total):
        dlq.envelope(f"thread_{index}", payload=update(f"thread_{index}"))
    base = ["replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url]

    code, report = run_json(capsys, *base, "--limit", "10")
    assert code == 0
    assert report["replayed"] == 10
    assert counts(aws.sqs, aws.queue_url) == (10, 0)
    assert counts(aws.sqs, aws.dlq_url) == (15, 0)

    code, report = run_json(capsys, *base, "--limit", "100")
    assert report["replayed"] == 15
    assert sorted(json.loads(body)["thread_id"] for body in bodies(aws.sqs, aws.queue_url)) == sorted(
        f"thread_{index}" for index in range(total)
    )
    assert counts(aws.sqs, aws.dlq_url) == (0, 0)


class InterruptingStderr(io.StringIO):
    """A stderr that sends SIGINT (or raises KeyboardInterrupt) on the n-th progress redraw."""

    def __init__(self, after: int, *, action: str) -> None:
        super().__init__()
        self.after = after
        self.action = action
        self.draws = 0

    def write(self, text: str) -> int:
        written = super().write(text)
        if text.startswith("\rreplay ["):
            self.draws += 1
            if self.draws == self.after:
                if self.action == "sigint":
                    signal.raise_signal(signal.SIGINT)
                elif self.action == "raise":
                    raise KeyboardInterrupt
                else:
                    boto3.client("sqs").delete_queue(QueueUrl=self.action)
        return written


@pytest.fixture
def fill_25(aws: AwsResources, dlq: Dlq) -> int:
    for index in range(25):
        dlq.envelope(f"thread_{index}", payload=update(f"thread_{index}"))
    return 25


@pytest.mark.parametrize("action", ["sigint", "raise"])
def test_interrupt_stops_cleanly_and_loses_nothing(
    aws: AwsResources,
    fill_25: int,
    action: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given 25 letters, when Ctrl-C arrives after the 3rd message (as SIGINT: stop after the
    current message; or as a KeyboardInterrupt), then replay stops with status 130, reports
    the counts, and DLQ + source queue still hold all 25, the DLQ's visible again."""
    stderr = InterruptingStderr(3, action=action)
    monkeypatch.setattr(sys, "stderr", stderr)
    handler_before = signal.getsignal(signal.SIGINT)

    code, report = run_json(
        capsys, "replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url, "--progress"
    )

    assert code == 130
    assert report["interrupted"] is True
    assert report["replayed"] == 3
    in_source, _ = counts(aws.sqs, aws.queue_url)
    in_dlq, in_flight = counts(aws.sqs, aws.dlq_url)
    assert in_source == 3
    assert (in_dlq, in_flight) == (fill_25 - 3, 0)
    assert in_source + in_dlq == fill_25
    if action == "sigint":
        assert "stopping after the current message" in stderr.getvalue()
    assert signal.getsignal(signal.SIGINT) is handler_before  # restored


def test_source_queue_vanishing_midway_keeps_unsent_letters(
    aws: AwsResources, fill_25: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 25 letters, when the source queue is deleted after the 5th message, then the next
    send fails, replay stops, and exactly the 20 letters not confirmed sent remain in the DLQ."""
    monkeypatch.setattr(sys, "stderr", InterruptingStderr(5, action=aws.queue_url))

    code, report = run_json(
        capsys, "replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url, "--progress"
    )

    assert code == 1
    assert (report["replayed"], report["failed"]) == (5, 1)
    assert counts(aws.sqs, aws.dlq_url) == (fill_25 - 5, 0)


def test_progress_bar_on_stderr(aws: AwsResources, fill_25: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Given --progress, then stderr shows a redrawn bar ending with the totals, and stdout the summary."""
    code = main(
        ["dlq", "replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url, "--progress", *FAST]
    )

    captured = capsys.readouterr()
    assert code == 0
    assert "replayed 25, failed 0" in captured.out
    last_draw = captured.err.rstrip("\n").rsplit("\r", 1)[-1]
    assert last_draw == f"replay [{'#' * 30}] 25/25 scanned, 25 replayed, 0 failed"


def test_replay_to_fifo_source_queue_sets_group_and_dedup_ids(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a FIFO source queue, then each copy has MessageGroupId = thread id (or "replay"
    when there is none) and a deduplication id, so a rerun within 5 minutes is not duplicated."""
    fifo_url = aws.sqs.create_queue(
        QueueName=f"updates-{uuid.uuid4().hex[:10]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    dlq.envelope("thread_f", payload=update("thread_f"))
    dlq.envelope(None, category=Category.VALIDATION, status=None, payload="not json")

    code, report = run_json(capsys, "replay", "--dlq-url", aws.dlq_url, "--source-queue-url", fifo_url)

    assert code == 0, report
    messages = drain(aws.sqs, fifo_url)
    groups = {message["Body"]: message["Attributes"]["MessageGroupId"] for message in messages}
    assert groups == {update("thread_f"): "thread_f", "not json": "replay"}
    assert all(message["Attributes"].get("MessageDeduplicationId") for message in messages)


def test_environment_defaults(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given DLQ_URL and SOURCE_QUEUE_URL in the environment, then no option is needed."""
    monkeypatch.setenv("DLQ_URL", aws.dlq_url)
    monkeypatch.setenv("SOURCE_QUEUE_URL", aws.queue_url)
    dlq.envelope("thread_env", payload=update("thread_env"))

    code, out = run(capsys, "replay")

    assert code == 0, out
    assert bodies(aws.sqs, aws.queue_url) == [update("thread_env")]


def test_eventbridge_delivery_dlq_events_are_undelivered_and_re_put(
    aws: AwsResources, bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a raw EventBridge event with EventBridge's DLQ attributes (the rule's delivery DLQ),
    then inspect shows it as `undelivered` with the error code, and replay re-puts it to the bus."""
    event = eventbridge_event("thread_undelivered")
    error_attributes = {
        "RULE_ARN": "arn:aws:events:us-east-1:123456789012:rule/threads/modify-thread",
        "TARGET_ARN": "arn:aws:lambda:us-east-1:123456789012:function:modify-thread",
        "ERROR_CODE": "NO_PERMISSIONS",
        "ERROR_MESSAGE": "EventBridge is not authorized to invoke the function",
    }
    aws.sqs.send_message(
        QueueUrl=aws.dlq_url,
        MessageBody=json.dumps(event),
        MessageAttributes={
            name: {"DataType": "String", "StringValue": value} for name, value in error_attributes.items()
        },
    )

    _, document = run_json(capsys, "inspect", "--dlq-url", aws.dlq_url)
    (message,) = document["messages"]
    assert (message["category"], message["source"], message["thread_id"]) == (
        "undelivered",
        "eventbridge",
        "thread_undelivered",
    )
    assert "NO_PERMISSIONS" in message["reason"]

    code, report = run_json(capsys, "replay", "--dlq-url", aws.dlq_url, "--event-bus", bus.name)
    assert code == 0, report
    (delivered,) = drain(aws.sqs, bus.capture_url)
    assert json.loads(delivered["Body"])["detail"] == event["detail"]
    assert counts(aws.sqs, aws.dlq_url) == (0, 0)
