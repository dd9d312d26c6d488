"""The DLQ tool is safe to run at 3 a.m.: no replay loops, complete reads or a non-zero exit, nothing
deleted without a route, input checked, every AWS error one line. moto in server mode throughout, and
the real handler behind the local poller where letters must fail again."""

from __future__ import annotations

import io
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from devstack.poller import SqsPoller
from devstack.portkey_standin import PortkeyStandIn, Reply
from ops.dlq.cli import main
from tests.conftest import AwsResources
from tests.tooling.dlq_support import FAST, Bus, Dlq, counts, drain, peek, run, run_json, to_queue, update
from thread_updater.deadletter import Category

BOUND_S = 30.0  # every wait below is for a condition, bounded by this


class HookOnProgress(io.StringIO):
    """A stderr that runs ``hook`` on every progress redraw: a step of the world between two letters."""

    def __init__(self, hook: Callable[[int], object]) -> None:
        super().__init__()
        self.hook = hook
        self.draws = 0

    def write(self, text: str) -> int:
        written = super().write(text)
        if text.startswith("\rreplay ["):
            self.draws += 1
            self.hook(self.draws)
        return written


def wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + BOUND_S
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.05)  # polling interval of a condition, not a stand-in for it


# --------------------------------------------------------------------------- replay never loops


@pytest.fixture
def consumer(function_env: dict[str, str], aws: AwsResources) -> SqsPoller:
    """The function behind the local poller on the source queue (its DLQ is this test's DLQ)."""
    from handler import lambda_handler

    return SqsPoller(aws.queue_url, lambda_handler, window_s=0.0, function_timeout_s=30)


def fill_with_failing_letters(
    case: str, aws: AwsResources, consumer: SqsPoller, portkey: PortkeyStandIn
) -> None:
    """Two real dead letters written by the function: invalid updates, or updates of a thread that 404s."""
    portkey.always("thread_gone", Reply(status=404))
    for index in range(2):
        body = (
            json.dumps({"thread_id": f"thread_{index}", "metadata": "not an object"})
            if case == "validation"
            else update("thread_gone", n=str(index))
        )
        aws.sqs.send_message(QueueUrl=aws.queue_url, MessageBody=body)
    consumer.drain(max_seconds=BOUND_S)
    assert counts(aws.sqs, aws.dlq_url) == (2, 0)


@pytest.mark.usefixtures("paired")
@pytest.mark.parametrize("case", ["validation", "rejected"])
def test_letters_that_fail_again_are_replayed_once_per_run(
    case: str,
    aws: AwsResources,
    consumer: SqsPoller,
    portkey: PortkeyStandIn,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given 2 dead letters that will fail again (invalid, or 404 before the route is fixed) and the
    function consuming the source queue, when a replay runs and the function dead-letters each copy
    right after it is sent, then each letter is replayed once, the 2 new dead letters are left for a
    later run (the summary's "left in the DLQ" is the queue's depth), and the next run again replays
    each once."""
    fill_with_failing_letters(case, aws, consumer, portkey)
    originals = {message["MessageId"] for message in peek(aws.sqs, aws.dlq_url)}
    monkeypatch.setattr("sys.stderr", HookOnProgress(lambda _: consumer.poll_once()))
    base = [*to_queue(aws), "--progress"]

    code, report = replay_report(capsys, *base, "--category", case)

    assert code == 0, report
    assert (report["scanned"], report["replayed"], report["left_in_dlq"]) == (2, 2, 2)
    assert {message["message_id"] for message in report["messages"]} == originals
    fresh = {message["MessageId"] for message in peek(aws.sqs, aws.dlq_url)}
    assert len(fresh) == 2
    assert fresh.isdisjoint(originals)

    code, report = replay_report(capsys, *base, "--category", case)

    assert (code, report["replayed"], report["left_in_dlq"]) == (0, 2, 2)
    assert {message["message_id"] for message in report["messages"]} == fresh


def replay_report(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, dict[str, Any]]:
    """The JSON report, after the function's own log lines (it runs in this process, on the same stdout)."""
    code, out = run(capsys, *argv, "--json")
    report: dict[str, Any] = json.loads(out[out.rindex('{\n  "dry_run"') :])
    return code, report


# --------------------------------------------------------------------------- complete reads


def fill_half_selected(dlq: Dlq, total: int) -> None:
    for index in range(total):
        if index % 2:
            dlq.envelope(f"thread_{index}", category=Category.VALIDATION, status=None, payload="x")
        else:
            dlq.envelope(f"thread_{index}", payload=update(f"thread_{index}"))


def test_held_letters_reappearing_do_not_end_the_run_early(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Given 60 letters, 30 of them rejected, and a 1-second visibility timeout, when the run stalls
    after its 5th letter until every letter it holds is visible again, then it still replays all 30
    rejected letters (a page of letters it had already seen does not end it), exits 0, and leaves
    exactly the 30 others in the DLQ, visible."""

    def stall(draw: int) -> None:
        if draw == 20:
            wait_until(lambda: counts(aws.sqs, aws.dlq_url)[1] == 0)

    fill_half_selected(dlq, 60)
    monkeypatch.setattr("sys.stderr", HookOnProgress(stall))

    code, report = run_json(
        capsys,
        *to_queue(aws),
        "--category",
        "rejected",
        "--visibility-timeout",
        "1",
        "--progress",
    )

    assert (report["replayed"], report["left_in_dlq"]) == (30, 30)
    assert (code, report["selected"], report.get("complete")) == (0, 30, True)
    assert counts(aws.sqs, aws.queue_url) == (30, 0)
    assert counts(aws.sqs, aws.dlq_url) == (30, 0)


def test_max_messages_reached_is_reported_and_not_success(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given 25 letters, when a replay may read only 10, then it replays those 10, says the read stopped
    at --max-messages with about 15 more in the queue, and exits 3."""
    for index in range(25):
        dlq.envelope(f"thread_{index}", payload=update(f"thread_{index}"))

    code, out = run(
        capsys,
        *to_queue(aws),
        "--max-messages",
        "10",
    )

    assert code == 3
    assert "selected 10, replayed 10," in out
    assert "INCOMPLETE: stopped at --max-messages 10; about 15 more are in the queue" in out
    assert counts(aws.sqs, aws.dlq_url) == (15, 0)


# --------------------------------------------------------------------------- nothing deleted without a route


def test_bus_without_a_matching_rule_keeps_the_letter(
    aws: AwsResources, dlq: Dlq, bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given an async-failure record whose rule lives on another bus, when it is replayed with
    `--event-bus default`, then nothing is put, the letter stays in the DLQ and the run exits 1 saying
    the bus has no rule for it."""
    dlq.destination("thread_async")

    code, out = run(capsys, "replay", "--dlq-url", aws.dlq_url, "--event-bus", "default")

    assert code == 1
    (kept,) = [line for line in out.splitlines() if line.startswith("kept ")]
    assert "bus default has no enabled rule" in kept
    assert counts(aws.sqs, aws.dlq_url) == (1, 0)
    assert counts(aws.sqs, bus.capture_url) == (0, 0)


def test_rule_not_targeting_the_function_keeps_the_letter(
    aws: AwsResources, dlq: Dlq, bus: Bus, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given a bus whose only rule targets something else than the function named by --function-arn,
    then the letter is kept; named correctly, the letter is replayed through that rule."""
    dlq.destination("thread_async")
    function_arn = "arn:aws:lambda:us-east-1:123456789012:function:modify-thread"
    base = ["replay", "--dlq-url", aws.dlq_url, "--event-bus", bus.name]

    code, out = run(capsys, *base, "--function-arn", function_arn)

    assert code == 1
    assert f"no enabled rule targeting {function_arn}" in out
    assert counts(aws.sqs, aws.dlq_url) == (1, 0)

    capture_arn = aws.sqs.get_queue_attributes(QueueUrl=bus.capture_url, AttributeNames=["QueueArn"])
    code, out = run(capsys, *base, "--function-arn", capture_arn["Attributes"]["QueueArn"])

    assert code == 0, out
    assert "(rule modify-thread" in out
    assert counts(aws.sqs, aws.dlq_url) == (0, 0)
    assert counts(aws.sqs, bus.capture_url) == (1, 0)


def test_missing_bus_is_one_line_before_anything_changes(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    dlq.destination("thread_async")

    code = main(["replay", "--dlq-url", aws.dlq_url, "--event-bus", "no-such-bus", *FAST])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert "event bus no-such-bus does not exist" in line
    assert "EVENT_BUS_NAME" in line
    assert counts(aws.sqs, aws.dlq_url) == (1, 0)


# --------------------------------------------------------------------------- input


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--category", "rejectd"], "invalid choice: 'rejectd'"),
        (["--newer-than", "1d", "--older-than", "2d"], "--older-than must be shorter than --newer-than"),
        (["--visibility-timeout", "99999"], "expected an integer from 1 to 43200, got '99999'"),
        (["--status", "4040"], "expected an integer from 100 to 599"),
        (["--wait-seconds", "10", "--visibility-timeout", "20"], "more than twice --wait-seconds"),
    ],
)
def test_usage_errors_exit_2_briefly(
    argv: list[str], says: str, aws: AwsResources, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["replay", "--dlq-url", aws.dlq_url, *argv])

    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert says in err
    assert len(err) < 2000


def test_no_region_is_one_line(
    aws: AwsResources, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    """Given a local endpoint and no region anywhere, then one line says to set AWS_REGION (exit 2)."""
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", f"{tmp_path}/none")

    code = main(["inspect", "--dlq-url", aws.dlq_url, *FAST])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 2
    assert line.startswith("error: no AWS region: set AWS_REGION")


def test_wrong_dlq_url_is_named(aws: AwsResources, capsys: pytest.CaptureFixture[str]) -> None:
    wrong = aws.dlq_url + "-typo"

    code = main(["inspect", "--dlq-url", wrong, *FAST])

    (line,) = capsys.readouterr().err.splitlines()
    assert code == 1
    assert f"dead-letter queue {wrong} does not exist" in line
    assert "DeadLetterQueueUrl" in line


# --------------------------------------------------------------------------- actionable output


def test_every_replayed_letter_has_an_audit_line(
    aws: AwsResources, dlq: Dlq, capsys: pytest.CaptureFixture[str]
) -> None:
    """Given 3 letters, then a real (not dry) replay prints one line per letter: result, DLQ message id,
    category/status, source, thread and where the copy went, with the copy's id."""
    for index in range(3):
        dlq.envelope(f"thread_{index}", payload=update(f"thread_{index}"))

    code, out = run(capsys, "replay", "--dlq-url", aws.dlq_url, "--source-queue-url", aws.queue_url)

    assert code == 0
    audit = [line.split() for line in out.splitlines() if line.startswith("replayed ")]
    assert len(audit) == 3
    copies = {message["MessageId"] for message in drain(aws.sqs, aws.queue_url)}
    for index, fields in enumerate(audit):
        uuid.UUID(fields[1])
        assert fields[2:6] == ["rejected/404", "sqs", "thread", f"thread_{index}"]
        assert fields[6:9] == ["->", "queue", aws.queue_url]
        assert fields[9] == "as"
        assert fields[10] in copies
