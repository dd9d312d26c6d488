"""The command line: ``python -m ops.dlq inspect|replay`` (``make dlq ARGS="…"``).

Options are validated before anything is read (exit 2 on a usage error), the queues and the bus are
checked before anything is changed, and every AWS error is printed as one line naming the queue or
bus and what to check. AWS endpoints and credentials come from boto3's own configuration
(``AWS_PROFILE``, ``AWS_REGION``, ``AWS_ENDPOINT_URL`` for a local stack).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING

from ops.dlq.aws_errors import AWS_ERRORS, AwsProblem, Subject, explain
from ops.dlq.inspect import run_inspect
from ops.dlq.letters import CATEGORIES
from ops.dlq.replay import ReplayOptions, ReplayRun, Selection
from ops.dlq.routes import BusRoutes, check_source_queue
from ops.dlq.scan import Scanner
from ops.dlq.send import Sender
from ops.dlq.supersede import StateTableCheck, is_superseded
from thread_updater.models import MAX_VERSION
from thread_updater.slots import Semantics

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_sqs import SQSClient

EXIT_USAGE = 2
_AGE = re.compile(r"^\s*(\d{1,6})\s*([smhd])\s*$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
_REGION_IN_URL = re.compile(r"^https://(?:sqs\.)?([a-z]{2}(?:-[a-z]+)+-\d)\.(?:queue\.)?amazonaws\.com")
DLQ_CHECK = "--dlq-url / DLQ_URL (stack output DeadLetterQueueUrl)"

INSPECT_HELP = """\
Read the whole dead-letter queue WITHOUT deleting anything and print it grouped by category, status,
source and thread id, with counts and the newest reasons (--json: machine-readable).

Letters read are held invisible while the command runs and made visible again at the end; every read
increases a letter's ApproximateReceiveCount. On a FIFO DLQ, letters behind a held letter of the same
message group cannot be read: the command then says so and exits 3.

Categories: validation, rejected (the function's envelope), exhausted (raw source-queue body moved by
the redrive policy), undelivered (EventBridge could not deliver the event), async-failure (Lambda
on-failure destination record of an EventBridge invoke). Source sqs letters go back to the source
queue, source eventbridge letters to the event bus.

Exit status: 0 read completely; 3 the read was incomplete (the reason is printed); 1 an AWS error;
2 usage error."""

REPLAY_HELP = """\
Send selected dead letters back where they came from, then delete them from the DLQ.

  source sqs (validation, rejected, exhausted)       -> the original body to the source queue
  source eventbridge (envelope, async-failure,
                      undelivered)                    -> the original event re-put on the bus

The run reads the whole DLQ first, then replays the selected letters, each thread's oldest first (by
version, else failure time). Letters that arrive during the run, such as new dead letters from copies
that fail again, are left for a later run. A letter is deleted ONLY after its copy was accepted, and
only if the copy can reach the function: the source queue must exist, and an enabled rule on the bus
must match the re-put event (and target --function-arn when given); otherwise the letter is kept.
The first failed send stops the run. Ctrl-C stops after the current letter; a second Ctrl-C aborts.
At worst a letter is replayed twice, never lost. A letter whose thread already has a newer version
applied is skipped as superseded unless --force. A letter without a trustworthy version (an
exhausted letter of a FIFO DLQ) is kept: its copy would count as the newest update and could
overwrite newer state; --version V gives such letters version V, --force-unversioned replays them
as the newest. Every handled letter gets one audit line.
Filters combine with AND; a repeated filter matches any of its values. Ages (15m, 2h, 7d) are
measured from the failure time.

Exit status: 0 every selected letter was replayed (or would be, or was superseded); 1 a send failed,
a letter was kept (no route, no trustworthy version) or not deleted after its send, or an AWS error;
3 the read was incomplete (the reason is printed; rerun); 130 interrupted; 2 usage error."""


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def int_in(low: int, high: int) -> Callable[[str], int]:
    """An argparse type: an integer from ``low`` to ``high`` (the message names the range, not each value)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"expected an integer from {low} to {high}, got {text!r}")
        return value

    return parse


def parse_age(text: str) -> timedelta:
    """``15m``, ``2h``, ``30s``, ``7d`` -> timedelta (argparse type)."""
    match = _AGE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(
            f"invalid age {text!r}: use a number and s, m, h or d, e.g. 15m or 2h"
        )
    return timedelta(**{_AGE_UNITS[match.group(2)]: int(match.group(1))})


def _common_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dlq-url", default=_env("DLQ_URL"), metavar="URL", help="dead-letter queue URL (default: $DLQ_URL)"
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")
    parser.add_argument(
        "--max-messages",
        type=int_in(1, 100_000),
        default=1000,
        metavar="N",
        help="read at most N letters (default: 1000)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int_in(1, 43_200),
        default=60,
        metavar="SECONDS",
        help="how long letters stay hidden if the command dies (extended while it runs; default: 60)",
    )
    parser.add_argument(
        "--wait-seconds",
        type=int_in(0, 20),
        default=1,
        metavar="SECONDS",
        help="long-poll wait per receive (default: 1; 0 may miss letters on a real queue)",
    )


def _replay_options(replay: argparse.ArgumentParser) -> None:
    replay.add_argument(
        "--source-queue-url",
        default=_env("SOURCE_QUEUE_URL"),
        metavar="URL",
        help="default: $SOURCE_QUEUE_URL",
    )
    replay.add_argument(
        "--event-bus", default=_env("EVENT_BUS_NAME"), metavar="NAME", help="default: $EVENT_BUS_NAME"
    )
    replay.add_argument(
        "--function-arn",
        default=_env("FUNCTION_ARN"),
        metavar="ARN",
        help="bus letters: require a rule targeting this function (default: $FUNCTION_ARN)",
    )
    replay.add_argument(
        "--category", action="append", choices=CATEGORIES, help="letter category (repeatable)"
    )
    replay.add_argument(
        "--status", action="append", type=int_in(100, 599), metavar="CODE", help="HTTP status, e.g. 404"
    )
    replay.add_argument("--thread-id", action="append", metavar="ID", help="thread id (repeatable)")
    replay.add_argument(
        "--conversation-id", action="append", metavar="ID", help="conversation id (repeatable)"
    )
    replay.add_argument(
        "--older-than", type=parse_age, metavar="AGE", help="failed more than AGE ago (15m, 2h, 7d)"
    )
    replay.add_argument("--newer-than", type=parse_age, metavar="AGE", help="failed less than AGE ago")
    replay.add_argument(
        "--limit", type=int_in(1, 100_000), metavar="N", help="replay at most N selected letters"
    )
    replay.add_argument("--dry-run", action="store_true", help="print what would be replayed; change nothing")
    replay.add_argument("--force", action="store_true", help="replay superseded letters too")
    replay.add_argument(
        "--version",
        type=int_in(1, MAX_VERSION),
        metavar="V",
        help="the version (ms since the epoch, no later than the update was sent) for letters without a "
        "trustworthy one, e.g. exhausted letters of a FIFO DLQ; letters with a version keep theirs",
    )
    replay.add_argument(
        "--force-unversioned",
        action="store_true",
        help="replay letters without a trustworthy version as they are: each copy then counts as the "
        "newest update of its thread and overwrites what was applied before",
    )
    replay.add_argument(
        "--state-table",
        default=_env("THREAD_STATE_TABLE"),
        metavar="NAME",
        help="the function's state table, to skip superseded letters (default: $THREAD_STATE_TABLE)",
    )
    replay.add_argument(
        "--metadata-semantics",
        choices=[semantics.value for semantics in Semantics],
        default=_env("METADATA_SEMANTICS") or Semantics.MERGE.value,
        help="what the upstream does with metadata, as the function is set (default: $METADATA_SEMANTICS "
        "or merge): a letter is superseded when every key it sets (merge) or its map (replace) is newer",
    )
    replay.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="stderr progress bar (default: when stderr is a terminal)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m ops.dlq",
        description="Inspect the dead-letter queue without deleting, or replay dead letters "
        "(send-then-delete: at worst a duplicate, never a loss).",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    formatter = argparse.RawDescriptionHelpFormatter
    inspect = commands.add_parser(
        "inspect",
        allow_abbrev=False,
        help="summarise the DLQ without deleting",
        description=INSPECT_HELP,
        formatter_class=formatter,
    )
    _common_options(inspect)
    replay = commands.add_parser(
        "replay",
        allow_abbrev=False,
        help="send dead letters back, then delete them",
        description=REPLAY_HELP,
        formatter_class=formatter,
    )
    _common_options(replay)
    _replay_options(replay)
    return parser


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Parses and cross-checks the options; a usage error exits 2 (argparse's convention)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.dlq_url:
        parser.error("no dead-letter queue: pass --dlq-url or set DLQ_URL (stack output DeadLetterQueueUrl)")
    if args.visibility_timeout <= 2 * args.wait_seconds:
        parser.error(
            "--visibility-timeout must be more than twice --wait-seconds, or letters held by this run "
            "reappear while it waits for more"
        )
    if getattr(args, "version", None) is not None and getattr(args, "force_unversioned", False):
        parser.error("--version and --force-unversioned exclude each other: give a version, or none")
    older, newer = getattr(args, "older_than", None), getattr(args, "newer_than", None)
    if older is not None and newer is not None and older >= newer:
        parser.error(
            "--older-than must be shorter than --newer-than: no letter failed more than "
            f"{older} ago and less than {newer} ago"
        )
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    out, err = sys.stdout, sys.stderr
    try:
        sqs, events = _clients(args)
        if args.command == "inspect":
            return run_inspect(_scanner(args, sqs), as_json=args.json, out=out)
        return _replay_run(args, sqs, events).run()
    except AwsProblem as problem:
        print(f"error: {problem}", file=err)
        return EXIT_USAGE if "no AWS region" in str(problem) else 1
    except AWS_ERRORS as error:  # reading the DLQ: the other calls explain their own errors
        print(f"error: {explain(error, Subject(f'dead-letter queue {args.dlq_url}', DLQ_CHECK))}", file=err)
        return 1


def _region(dlq_url: str) -> str:
    import boto3

    region = boto3.session.Session().region_name
    match = _REGION_IN_URL.match(dlq_url)
    if region is None and match is None:
        raise AwsProblem("no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), e.g. AWS_REGION=eu-west-1")
    return region or (match.group(1) if match else "")


def _clients(args: argparse.Namespace) -> tuple[SQSClient, EventBridgeClient | None]:
    import boto3
    from botocore.config import Config

    region = _region(args.dlq_url)
    config = Config(
        connect_timeout=5,
        read_timeout=max(30, args.wait_seconds + 10),
        retries={"mode": "standard", "max_attempts": 3},
    )
    session = boto3.session.Session()
    sqs: SQSClient = session.client("sqs", region_name=region, config=config)
    wants_bus = args.command == "replay" and args.event_bus
    events = session.client("events", region_name=region, config=config) if wants_bus else None
    return sqs, events


def _scanner(args: argparse.Namespace, sqs: SQSClient) -> Scanner:
    scanner = Scanner(
        sqs,
        args.dlq_url,
        visibility_timeout=args.visibility_timeout,
        wait_seconds=args.wait_seconds,
        max_messages=args.max_messages,
    )
    try:
        scanner.depth()  # the DLQ exists and is readable, before anything else
    except AWS_ERRORS as error:
        raise AwsProblem(explain(error, Subject(f"dead-letter queue {args.dlq_url}", DLQ_CHECK))) from None
    return scanner


def _replay_run(args: argparse.Namespace, sqs: SQSClient, events: EventBridgeClient | None) -> ReplayRun:
    scanner = _scanner(args, sqs)
    source_queue_problem = (
        check_source_queue(sqs, args.source_queue_url, args.dlq_url) if args.source_queue_url else None
    )
    routes = BusRoutes(events, args.event_bus, function_arn=args.function_arn) if events else None
    if routes is not None:
        routes.rules()  # the bus exists and its rules can be read, before anything is changed
    selection = Selection(
        categories=frozenset(args.category or ()),
        statuses=frozenset(args.status or ()),
        thread_ids=frozenset(args.thread_id or ()),
        conversation_ids=frozenset(args.conversation_id or ()),
        older_than=args.older_than,
        newer_than=args.newer_than,
    )
    wants_progress = args.progress if args.progress is not None else (sys.stderr.isatty() and not args.json)
    options = ReplayOptions(
        selection=selection,
        limit=args.limit,
        dry_run=args.dry_run,
        force=args.force,
        version=args.version,
        force_unversioned=args.force_unversioned,
        as_json=args.json,
        progress=bool(wants_progress),
    )
    sender = Sender(
        sqs,
        events,
        source_queue_url=args.source_queue_url,
        routes=routes,
        source_queue_problem=source_queue_problem,
    )
    superseded = (
        StateTableCheck(args.state_table, semantics=Semantics(args.metadata_semantics))
        if args.state_table
        else is_superseded
    )
    return ReplayRun(
        scanner=scanner, sender=sender, options=options, out=sys.stdout, err=sys.stderr, superseded=superseded
    )
