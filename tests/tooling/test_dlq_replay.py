"""``python -m ops.dlq replay`` against moto in server mode: what goes where, filters, dry run,
failures, interruption, FIFO ids, the environment's defaults."""

from __future__ import annotations

import io
import json
import signal
import sys
import uuid
from typing import Any

import boto3
import pytest

from devstack.lambda_events import sqs_event
from devstack.poller import lambda_record
from devstack.portkey_standin import PortkeyStandIn
from ops.dlq.cli import main
from ops.dlq.replay import ReplayOptions, ReplayRun, Selection
from ops.dlq.scan import Scanner
from ops.dlq.send import Sender
from ops.dlq.supersede import is_superseded
from tests.conftest import AwsResources, Invoker
from tests.tooling.dlq_support import (
    EVENT_SOURCE,
    FAST,
    Bus,
    Dlq,
    ago,
    bodies,
    counts,
    drain,
    eventbridge_event,
    fifo_pair,
    peek,
    queue_arn,
    run,
    run_json,
    to_queue,
    update,
)
from thread_updater.deadletter import Category, DeadLetter
from thread_updater.deadline import Deadline


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
        *to_queue(aws),
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
        *to_queue(aws),
        "--category",
        "exhausted",
    )

    assert code == 0, out
    assert "selected 1, replayed 1," in out
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
    base = [*to_queue(aws), "--dry-run"]

    _, report = run_json(capsys, *base, "--older-than", "2h")
    assert [m["thread_id"] for m in report["messages"]] == ["thread_old"]
    _, report = run_json(capsys, *base, "--newer-than", "15m")
    assert [m["thread_id"] for m in report["messages"]] == ["thread_new"]
    _, report = run_json(capsys, *base, "--older-than", "1m", "--newer-than", "1d")
    assert sorted(m["thread_id"] for m in report["messages"]) == ["thread_new", "thread_old"]

    with pytest.raises(SystemExit) as exit_info:
        main([*base, "--older-than", "15 minutes"])
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
    (kept,) = [line for line in out.splitlines() if line.startswith("kept ")]
    assert "no event bus" in kept
    assert "async-failure" in kept
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
        *to_queue(aws),
        "--event-bus",
        bus.name,
        "--dry-run",
    )

    assert code == 0
    assert out.count("would-replay") == 3
    assert f"-> queue {aws.queue_url}" in out
    assert f"-> bus {bus.name}" in out
    assert "DRY RUN: read 3 " in out
    assert "selected 3, would replay 3," in out
    assert counts(aws.sqs, aws.dlq_url) == (3, 0)
    assert counts(aws.sqs, aws.queue_url) == (0, 0)
    assert counts(aws.sqs, bus.capture_url) == (0, 0)


def test_failed_send_keeps_the_letter(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a source queue URL that does not exist, when replay runs, then it stops before reading
    with exit status 1 and one line naming that URL and the option to check; every letter is still in
    the DLQ, visible."""
    for index in range(3):
        dlq.envelope(f"thread_{index}", payload=update(f"thread_{index}"))
    missing = aws.queue_url + "-does-not-exist"

    code = main(["replay", "--dlq-url", aws.dlq_url, "--source-queue-url", missing, *FAST])

    captured = capsys.readouterr()
    assert code == 1
    (line,) = captured.err.splitlines()
    assert f"source queue {missing} does not exist" in line
    assert "--source-queue-url" in line
    assert counts(aws.sqs, aws.dlq_url) == (3, 0)


def test_swapped_queue_urls_are_refused_before_anything_is_read(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given live updates in the source queue and a letter in the DLQ, when replay runs with --dlq-url
    and --source-queue-url swapped, then it exits 1 before reading, with one line saying the queues
    look swapped, and both queues are unchanged (before the fix it exited 0 and moved the live updates
    into the DLQ)."""
    # GIVEN two live updates and one dead letter
    dlq.envelope("thread_dead", payload=update("thread_dead"))
    for index in range(2):
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=update(f"thread_live_{index}"))

    # WHEN the URLs are swapped
    code = main(["replay", "--dlq-url", aws.queue_url, "--source-queue-url", aws.dlq_url, *FAST])

    # THEN refused, and nothing moved
    captured = capsys.readouterr()
    assert code == 1, captured.out
    (line,) = captured.err.splitlines()
    assert "not swapped" in line
    assert counts(aws.sqs, aws.queue_url) == (2, 0)
    assert counts(aws.sqs, aws.dlq_url) == (1, 0)


def test_queue_letters_are_kept_when_the_source_queue_does_not_dead_letter_into_the_dlq(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a letter in the DLQ and --source-queue-url naming a queue whose redrive policy does not
    target that DLQ, when replay runs, then the letter is kept with the reason (exit 1) and nothing
    is sent there."""
    dlq.envelope("thread_k", payload=update("thread_k"))
    other = aws.sqs.create_queue(QueueName=f"other-{aws.queue_url.rsplit('-', 1)[-1]}")["QueueUrl"]

    code, out = run(capsys, "replay", "--dlq-url", aws.dlq_url, "--source-queue-url", other)

    assert code == 1, out
    (line,) = [line for line in out.splitlines() if line.startswith("kept ")]
    assert "does not dead-letter into" in line
    assert "redrive policy is not set" in line
    assert counts(aws.sqs, other) == (0, 0)
    assert counts(aws.sqs, aws.dlq_url) == (1, 0)


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

    code, report = run_json(capsys, *to_queue(aws), "--progress")

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

    code, report = run_json(capsys, *to_queue(aws), "--progress")

    assert code == 1
    assert (report["replayed"], report["failed"]) == (5, 1)
    assert counts(aws.sqs, aws.dlq_url) == (fill_25 - 5, 0)


def test_progress_bar_on_stderr(aws: AwsResources, fill_25: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Given --progress, then stderr shows a redrawn bar ending with the totals, and stdout the summary."""
    code = main([*to_queue(aws), "--progress", *FAST])

    captured = capsys.readouterr()
    assert code == 0
    assert "selected 25, replayed 25," in captured.out
    last_draw = captured.err.rstrip("\n").rsplit("\r", 1)[-1]
    assert last_draw == f"replay [{'#' * 30}] 25/25 selected, 25 replayed, 0 failed"


def test_replay_to_fifo_source_queue_sets_group_and_dedup_ids(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a FIFO source queue, then each copy has MessageGroupId = thread id (or "replay"
    when there is none) and a deduplication id, so a rerun within 5 minutes is not duplicated."""
    fifo_url, fifo_dlq_url = fifo_pair(aws)
    fifo_dlq = Dlq(aws, url=fifo_dlq_url)
    fifo_dlq.envelope("thread_f", payload=update("thread_f"))
    fifo_dlq.envelope(None, category=Category.VALIDATION, status=None, payload="not json")

    code, report = run_json(capsys, "replay", "--dlq-url", fifo_dlq_url, "--source-queue-url", fifo_url)

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


# --------------------------------------------------------------------------- versions and order


def test_version_goes_with_the_copy_to_the_source_queue(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a letter carrying the update's version (taken from the original SentTimestamp) and an old
    letter without one, then the first copy has the Number attribute `version` = that version (so the
    replay is not taken for a newer update), the second has none."""
    dlq.versioned("thread_v", version=1767225600123, version_source="sent_timestamp")
    dlq.envelope("thread_old", payload=update("thread_old"))

    code, out = run(capsys, *to_queue(aws))

    assert code == 0, out
    copies = {
        json.loads(m["Body"])["thread_id"]: m.get("MessageAttributes", {})
        for m in drain(aws.sqs, aws.queue_url)
    }
    assert copies["thread_v"]["version"] == {"DataType": "Number", "StringValue": "1767225600123"}
    assert "version" not in copies["thread_old"]
    assert " v1767225600123 " in out


def test_bus_copy_carries_version_in_detail_and_the_original_time(
    aws: AwsResources, dlq: Dlq, bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given EventBridge letters with a version, one whose detail has none and one whose detail has its
    own, then the re-put events keep their original `time`, the first gets `detail.version` from the
    letter and the second keeps its own."""
    original_time = "2026-01-02T03:04:05Z"
    for thread_id, detail_version in (("thread_nov", None), ("thread_own", 4)):
        event = eventbridge_event(thread_id)
        event["time"] = original_time
        if detail_version is not None:
            event["detail"]["version"] = detail_version
        dlq.versioned(
            thread_id, version=9, version_source="event_time", source="eventbridge", payload=json.dumps(event)
        )

    code, out = run(capsys, "replay", "--dlq-url", aws.dlq_url, "--event-bus", bus.name)

    assert code == 0, out
    delivered = {
        event["detail"]["thread_id"]: event
        for event in (json.loads(m["Body"]) for m in drain(aws.sqs, bus.capture_url))
    }
    assert delivered["thread_nov"]["detail"]["version"] == 9
    assert delivered["thread_own"]["detail"]["version"] == 4
    assert {event["time"] for event in delivered.values()} == {original_time}


def test_letters_of_a_thread_are_replayed_oldest_first(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given one thread's letters with versions 3, 1, 2 (in that order in the DLQ) and another thread's
    unversioned letters, newest failure first, when replayed to a FIFO source queue, then each thread's
    copies arrive in version order, else in failure order."""
    fifo_url, fifo_dlq_url = fifo_pair(aws)
    fifo_dlq = Dlq(aws, url=fifo_dlq_url)
    for version in (3, 1, 2):
        fifo_dlq.versioned(
            "thread_o", version=version, version_source="body", payload=update("thread_o", v=str(version))
        )
    fifo_dlq.envelope("thread_p", payload=update("thread_p", n="second"), failed_at=ago(minutes=1))
    fifo_dlq.envelope("thread_p", payload=update("thread_p", n="first"), failed_at=ago(minutes=5))

    code, out = run(capsys, "replay", "--dlq-url", fifo_dlq_url, "--source-queue-url", fifo_url)

    assert code == 0, out
    arrived = [json.loads(message["Body"]) for message in drain(aws.sqs, fifo_url)]
    assert [m["metadata"]["v"] for m in arrived if m["thread_id"] == "thread_o"] == ["1", "2", "3"]
    assert [m["metadata"]["n"] for m in arrived if m["thread_id"] == "thread_p"] == ["first", "second"]


# --------------------------------------------------------------------------- superseded letters


def superseded_run(aws: AwsResources, *, force: bool, out: io.StringIO) -> ReplayRun:
    """A replay whose superseded check says: versions below 5 were overtaken by a newer applied one."""
    sqs = boto3.client("sqs")
    scanner = Scanner(sqs, aws.dlq_url, visibility_timeout=30, wait_seconds=0, max_messages=100)
    sender = Sender(sqs, None, source_queue_url=aws.queue_url, routes=None)
    options = ReplayOptions(selection=Selection(), force=force)
    return ReplayRun(
        scanner=scanner,
        sender=sender,
        options=options,
        out=out,
        err=io.StringIO(),
        superseded=lambda letter: letter.version is not None and letter.version < 5,
    )


def test_superseded_letters_are_kept_and_reported_unless_forced(dlq: Dlq, aws: AwsResources) -> None:
    """Given letters with versions 3 and 7 and a check saying version 3 is superseded, then 7 is
    replayed, 3 stays in the DLQ with a `superseded` audit line and count (exit 0); with --force it is
    replayed too."""
    dlq.versioned("thread_s", version=3, version_source="body")
    dlq.versioned("thread_s", version=7, version_source="body")
    out = io.StringIO()

    assert superseded_run(aws, force=False, out=out).run() == 0

    (line,) = [line for line in out.getvalue().splitlines() if line.startswith("superseded ")]
    assert " v3 " in line
    assert "superseded 1," in out.getvalue()
    assert counts(aws.sqs, aws.queue_url) == (1, 0)
    assert counts(aws.sqs, aws.dlq_url) == (1, 0)

    assert superseded_run(aws, force=True, out=io.StringIO()).run() == 0
    assert counts(aws.sqs, aws.queue_url) == (2, 0)
    assert counts(aws.sqs, aws.dlq_url) == (0, 0)


def test_default_seam_supersedes_nothing() -> None:
    from ops.dlq.letters import classify

    letter = classify({"MessageId": "m", "Body": json.dumps({"thread_id": "t", "metadata": {}})})
    assert is_superseded(letter) is False


def test_redriven_body_keeps_its_original_sent_time_as_version(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a raw body without a version moved by the redrive policy (the function versioned it by its
    SentTimestamp, which the redrive keeps), then its copy carries that SentTimestamp as the `version`
    attribute, so the replay is not taken for a newer update than it is."""
    dlq.redriven(update("thread_raw"))
    (letter,) = peek(aws.sqs, aws.dlq_url)

    code, out = run(capsys, *to_queue(aws))

    assert code == 0, out
    (copy,) = drain(aws.sqs, aws.queue_url)
    version = {"DataType": "Number", "StringValue": letter["Attributes"]["SentTimestamp"]}
    assert copy["MessageAttributes"]["version"] == version


def test_redriven_body_with_a_null_version_is_not_replayed_over_a_newer_update(
    aws: AwsResources,
    dlq: Dlq,
    state_table: str,
    invoke: Invoker,
    portkey: PortkeyStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given an update whose body says `"version": null` (no version: the function versions it by its
    SentTimestamp) that was moved to the DLQ by the redrive policy, and a later update of the same
    thread applied through the function, when the letter is replayed (the state table from the
    environment), then it is skipped as superseded with its original SentTimestamp as version; forced,
    the copy carries that version and the function acknowledges it without a request: the thread keeps
    the later update (before the fix the copy went out unversioned and rolled the thread back)."""
    # GIVEN the older update, dead-lettered as exhausted, then a newer one applied
    dlq.redriven(json.dumps({"thread_id": "thread_null", "version": None, "metadata": {"v": "old"}}))
    (letter,) = peek(aws.sqs, aws.dlq_url)
    original = letter["Attributes"]["SentTimestamp"]
    aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=update("thread_null", v="new"))
    (newer,) = apply_the_source_queue(aws, invoke)
    assert int(original) < int(newer["Attributes"]["SentTimestamp"])
    assert portkey.thread("thread_null")["metadata"] == {"v": "new"}  # type: ignore[index]

    # WHEN the letter is replayed
    code, out = run(capsys, *to_queue(aws))

    # THEN it is superseded by its original version and kept
    assert code == 0, out
    (line,) = [line for line in out.splitlines() if "thread_null" in line]
    assert line.startswith("superseded "), line
    assert f" v{original} " in line, line
    assert counts(aws.sqs, aws.dlq_url) == (1, 0)

    # WHEN it is forced through and its copy reaches the function
    code, out = run(capsys, *to_queue(aws), "--force")
    assert code == 0, out
    sent = len(portkey.requests)
    (copy,) = apply_the_source_queue(aws, invoke)

    # THEN the copy had the original version, the function sent nothing, and the newer update stands
    assert copy["MessageAttributes"]["version"] == {"DataType": "Number", "StringValue": original}
    assert len(portkey.requests) == sent
    assert portkey.thread("thread_null")["metadata"] == {"v": "new"}  # type: ignore[index]


def test_exhausted_letter_of_a_fifo_dlq_is_kept_without_a_version(
    aws: AwsResources,
    state_table: str,
    invoke: Invoker,
    portkey: PortkeyStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given an update without a version moved to a FIFO DLQ by the redrive policy (a FIFO DLQ's
    SentTimestamp is the move's: the version the function gave it is lost), and a later update of the
    same thread applied through the function, when the letter is replayed, then it is kept, the run
    says why and exits 1, and the thread keeps the later update (before the fix the copy was replayed
    as the newest update and rolled the thread back); with --version the copy carries that version."""
    # GIVEN the older update, moved to the FIFO DLQ after one receive, then a newer one applied
    source_url, dlq_url = fifo_pair(aws)
    old = update("thread_fifo", v="old")
    aws.sqs.send_message(QueueUrl=source_url, MessageBody=old, MessageGroupId="thread_fifo")
    for _ in range(3):  # the first receive counts 1, the next moves it to the DLQ
        aws.sqs.receive_message(QueueUrl=source_url, VisibilityTimeout=0)
    assert counts(aws.sqs, source_url) == (0, 0)
    new = update("thread_fifo", v="new")
    aws.sqs.send_message(QueueUrl=source_url, MessageBody=new, MessageGroupId="thread_fifo")
    apply_the_source_queue(aws, invoke, source_url)
    assert portkey.thread("thread_fifo")["metadata"] == {"v": "new"}  # type: ignore[index]
    replay = ["replay", "--dlq-url", dlq_url, "--source-queue-url", source_url]

    # WHEN the letter is replayed without a version
    code, out = run(capsys, *replay)

    # THEN it is kept with the reason, nothing reaches the source queue, and the newer update stands
    assert code == 1, out
    (line,) = [line for line in out.splitlines() if "thread_fifo" in line]
    assert line.startswith("kept "), line
    assert "FIFO DLQ's SentTimestamp is when the letter was moved" in line
    assert "--version V" in line
    assert counts(aws.sqs, dlq_url) == (1, 0)
    assert counts(aws.sqs, source_url) == (0, 0)
    assert portkey.thread("thread_fifo")["metadata"] == {"v": "new"}  # type: ignore[index]

    # WHEN it is replayed with an explicit version older than the applied update, forced past the check
    code, out = run(capsys, *replay, "--version", "1", "--force")
    assert code == 0, out
    sent = len(portkey.requests)
    (copy,) = apply_the_source_queue(aws, invoke, source_url)

    # THEN the copy carries that version, and the function acknowledges it without a request
    assert copy["MessageAttributes"]["version"] == {"DataType": "Number", "StringValue": "1"}
    assert len(portkey.requests) == sent
    assert portkey.thread("thread_fifo")["metadata"] == {"v": "new"}  # type: ignore[index]
    assert counts(aws.sqs, dlq_url) == (0, 0)


def test_version_and_force_unversioned_exclude_each_other(
    aws: AwsResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given both --version and --force-unversioned, then replay is a usage error (exit 2) saying so."""
    with pytest.raises(SystemExit) as exit_info:
        main([*to_queue(aws), "--version", "5", "--force-unversioned", *FAST])

    assert exit_info.value.code == 2
    assert "--version and --force-unversioned exclude each other" in capsys.readouterr().err


def test_replay_checks_the_state_table_and_the_function_never_rolls_a_thread_back(
    aws: AwsResources,
    dlq: Dlq,
    state_table: str,
    invoke: Invoker,
    portkey: PortkeyStandIn,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Given version 5 of a thread applied through the function, and dead letters of the same thread
    at version 3 (older) and 8 (newer), when replayed with the state table, then 3 is skipped as
    superseded and 8 replayed; with --force 3 is replayed too, and the function acknowledges that copy
    as superseded without a request: the thread keeps version 8."""
    invoke(sqs_event([{"thread_id": "thread_t", "version": 5, "metadata": {"v": "5"}}]))
    for version in (3, 8):
        body = json.dumps({"thread_id": "thread_t", "version": version, "metadata": {"v": str(version)}})
        dlq.versioned("thread_t", version=version, version_source="body", payload=body)

    code, out = run(capsys, *to_queue(aws), "--state-table", state_table)

    assert code == 0, out
    assert [line.split()[0] for line in out.splitlines() if "thread_t" in line] == ["superseded", "replayed"]
    apply_the_source_queue(aws, invoke)
    assert portkey.thread("thread_t")["metadata"] == {"v": "8"}  # type: ignore[index]

    code, out = run(capsys, *to_queue(aws), "--state-table", state_table, "--force")

    assert code == 0, out
    sent = len(portkey.requests)
    apply_the_source_queue(aws, invoke)
    assert len(portkey.requests) == sent  # superseded by the function: no request
    assert portkey.thread("thread_t")["metadata"] == {"v": "8"}  # type: ignore[index]
    assert counts(aws.sqs, aws.dlq_url) == (0, 0)


def apply_the_source_queue(
    aws: AwsResources, invoke: Invoker, url: str | None = None
) -> list[dict[str, Any]]:
    """What the event source mapping does: the source queue's messages through the function (returned)."""
    url = url or aws.queue_url
    arn = queue_arn(aws.sqs, url)
    messages = drain(aws.sqs, url)
    assert messages
    response = invoke({"Records": [lambda_record(message, arn) for message in messages]})  # type: ignore[arg-type]
    assert response == {"batchItemFailures": []}
    return messages


def test_conversation_letters_are_named_selected_and_replayed_to_their_own_fifo_group(
    aws: AwsResources, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given the function's letters for two conversations (404 "Conversation with id … not found") in a
    FIFO DLQ, then inspect names each conversation, ``--conversation-id`` selects one, and its copy
    goes to the source queue in that conversation's own message group (as producers send it)."""
    fifo_url, fifo_dlq_url = fifo_pair(aws)
    fifo_dlq = Dlq(aws, url=fifo_dlq_url)
    for conversation in ("conv_a", "conv_b"):
        letter = DeadLetter(
            category=Category.REJECTED,
            error=f"HTTP 404: Conversation with id '{conversation}' not found.",
            status=404,
            thread_id=None,
            conversation_id=conversation,
            source="sqs",
            message_id=str(uuid.uuid4()),
            payload=json.dumps({"conversation_id": conversation, "metadata": {"k": "v"}}),
            attempts=1,
        )
        fifo_dlq.sender.send(letter, deadline=Deadline.after(60))

    code, document = run_json(capsys, "inspect", "--dlq-url", fifo_dlq_url)
    assert code == 0
    assert {(group["thread_id"], group["conversation_id"]) for group in document["groups"]} == {
        (None, "conv_a"),
        (None, "conv_b"),
    }
    code, out = run(capsys, "inspect", "--dlq-url", fifo_dlq_url)
    assert "conversation conv_a" in out

    code, report = run_json(
        capsys,
        "replay",
        "--dlq-url",
        fifo_dlq_url,
        "--source-queue-url",
        fifo_url,
        "--conversation-id",
        "conv_a",
    )

    assert code == 0, report
    assert report["replayed"] == 1
    [copy] = drain(aws.sqs, fifo_url)
    assert json.loads(copy["Body"])["conversation_id"] == "conv_a"
    assert copy["Attributes"]["MessageGroupId"] == "conv_a"
    [left] = drain(aws.sqs, fifo_dlq_url)
    assert json.loads(left["Body"])["conversation_id"] == "conv_b"
