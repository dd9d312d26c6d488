"""Run the whole loop locally: moto SQS/Secrets Manager/EventBridge, the Portkey stand-in, the poller
and the real ``lambda_handler``. ``make run`` (``python -m devstack.run``).

It sends the ``events/`` samples (plus ``--count`` generated updates), drains the queue through the
handler, prints the settings it ran with, each message's outcome, the final thread states, the DLQ,
the totals and timings, then stops everything it started, also on Ctrl-C. It exits non-zero when a
message is left unsettled, the handler crashed, or nothing at all was applied.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import boto3

from devstack.gateway import GatewayUnavailable, PortkeyGateway
from devstack.lambda_events import LocalContext
from devstack.local_aws import LocalResources, create_resources, function_environment, moto_server
from devstack.poller import PollStats, SqsPoller
from devstack.portkey_standin import PortkeyStandIn, Reply
from devstack.run_report import (
    APPLIED,
    LoggedOutcomes,
    conversation_table,
    dead_letter_table,
    message_table,
    outcome_rows,
    recording,
    thread_table,
    totals_line,
)
from devstack.standin.store import conversation_not_found

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
LOCAL_API_KEY = "pk-local-demo-key"
LOCAL_PROVIDER_TOKEN = "sk-local-provider-token"  # --gateway: the Bearer token the stand-in accepts
GONE_THREAD = "thread_gone"  # answers 404, as a thread behind a sunset Assistants API would
GONE_CONVERSATION = "conv_gone"  # answers 404, as a conversation the upstream does not have
# Sent with the samples: a conversation update to GONE_CONVERSATION, dead-lettered as rejected (404).
GONE_CONVERSATION_BODY = json.dumps({"conversation_id": GONE_CONVERSATION, "metadata": {"stage": "reviewed"}})
SQS_SAMPLES = ("sqs-batch.json", "eventbridge-via-sqs.json", "sqs-conversation.json")
# Invoked directly, as an EventBridge rule invokes the function; the first is also put on the bus.
EVENTBRIDGE_SAMPLES = ("eventbridge.json", "eventbridge-conversation.json")
VIA_BUS = "(EventBridge bus: events/eventbridge.json)"
FUNCTION_TIMEOUT_S = 60
DRAIN_LIMIT_S = 120.0
# Locally, a handed-back message without a retry delay of its own (a configuration error) comes back
# after 3 s; long enough that a batch still being processed on a busy machine is not received twice.
VISIBILITY_TIMEOUT_S = 3


def bounded(kind: Callable[[str], float], low: float, high: float) -> Callable[[str], Any]:
    """An argparse type: ``kind(text)`` within ``low..high``, else a usage error naming the range."""

    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a valid {kind.__name__}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{text} is outside {low:g}..{high:g}")
        return value

    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m devstack.run", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("--count", type=bounded(int, 0, 100_000), default=0, help="also send N generated updates (0..100000)")
    add("--threads", type=bounded(int, 1, 10_000), default=20, help="threads they spread over (1..10000)")
    add("--batch-size", type=bounded(int, 1, 10_000), default=10, help="event source BatchSize (1..10000)")
    add("--window", type=bounded(float, 0, 300), default=0.5, help="MaximumBatchingWindowInSeconds (0..300)")
    add(
        "--max-receive-count", type=bounded(int, 1, 1000), default=3, help="redrive maxReceiveCount (1..1000)"
    )
    add(
        "--fail-rate",
        type=bounded(float, 0, 1),
        default=0.0,
        help="share of Portkey calls for generated updates answered 503 (0..1), to see retries and redrive",
    )
    add("--seed", type=int, default=0, help="seed of the --fail-rate choices (same seed, same failures)")
    add("--rows", type=bounded(int, 1, 100_000), default=40, help="rows shown per table (1..100000)")
    add("--gateway", action="store_true", help="go through the real Portkey gateway to the stand-in")
    add(
        "--live",
        action="store_true",
        help="call a real Portkey (PORTKEY_BASE_URL, secret JSON from PORTKEY_SECRET_JSON or --secret-file); "
        "queues stay local",
    )
    add("--secret-file", type=Path, help="--live: a file holding the Portkey secret JSON")
    add("--log-file", type=Path, default=ROOT / "build" / "local-run.log", help="the function's JSON logs")
    args = parser.parse_args(argv)
    if args.live and (args.gateway or args.fail_rate):
        parser.error("--live calls your Portkey: --gateway and --fail-rate need the local stand-in")
    return args


def serve_gone_targets(stand_in: PortkeyStandIn) -> None:
    """``GONE_THREAD`` and ``GONE_CONVERSATION`` answer 404 with OpenAI's error bodies: a thread behind
    a sunset API, a conversation that does not exist."""
    message = f"No thread found with id '{GONE_THREAD}'."
    stand_in.always(
        GONE_THREAD, Reply(status=404, body={"error": {"message": message, "type": "invalid_request_error"}})
    )
    stand_in.always(
        GONE_CONVERSATION, Reply(status=404, body=conversation_not_found(GONE_CONVERSATION).body())
    )


def sample_bodies() -> list[str]:
    """SQS bodies from the samples (the SQS batch, the EventBridge-through-SQS batch, the conversation
    batch), then the update to the gone conversation."""
    bodies: list[str] = []
    for name in SQS_SAMPLES:
        bodies += [record["body"] for record in json.loads((EVENTS / name).read_text())["Records"]]
    return [*bodies, GONE_CONVERSATION_BODY]


def generated_thread(index: int, threads: int) -> str:
    return GONE_THREAD if index % 50 == 49 else f"thread_gen_{index % threads}"


def generated_bodies(count: int, threads: int) -> list[str]:
    return [
        json.dumps({"thread_id": generated_thread(index, threads), "metadata": {"sequence": str(index)}})
        for index in range(count)
    ]


def inject_failures(stand_in: PortkeyStandIn, args: argparse.Namespace, max_attempts: int) -> int:
    """Script each generated thread's calls: 503 with probability ``--fail-rate``, else applied.

    Enough replies for the most calls a thread can get (its updates x attempts x receives); unused
    ones are never consumed. Returns how many 503s were scripted.
    """
    if not args.fail_rate or not args.count:
        return 0
    chooser = random.Random(args.seed)  # a reproducible demo, not security
    per_thread = math.ceil(args.count / args.threads) * max_attempts * args.max_receive_count
    failures = 0
    thread_ids = {generated_thread(index, args.threads) for index in range(args.count)} - {GONE_THREAD}
    for thread_id in sorted(thread_ids):
        replies = [
            Reply(status=503) if chooser.random() < args.fail_rate else Reply() for _ in range(per_thread)
        ]
        failures += sum(reply.status == 503 for reply in replies)
        stand_in.script(thread_id, *replies)
    return failures


def put_on_bus(bus_name: str, event: dict[str, Any]) -> None:
    """PutEvents the sample's source, detail-type and detail on the local bus, as a producer would."""
    answer = boto3.client("events").put_events(
        Entries=[
            {
                "EventBusName": bus_name,
                "Source": event["source"],
                "DetailType": event["detail-type"],
                "Detail": json.dumps(event["detail"]),
            }
        ]
    )
    if answer["FailedEntryCount"]:
        raise RuntimeError(f"PutEvents failed: {answer['Entries']}")


def send_all(queue_url: str, bodies: list[str]) -> dict[str, str]:
    """SendMessageBatch (moto's SendMessage slows down on deep queues); returns message id → body."""
    sqs = boto3.client("sqs")
    sent: dict[str, str] = {}
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        answer = sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[{"Id": str(index), "MessageBody": body} for index, body in enumerate(chunk)],
        )
        for entry in answer.get("Successful", []):
            sent[entry["MessageId"]] = chunk[int(entry["Id"])]
    return sent


def dead_letters(dlq_url: str, limit: int = 10_000) -> list[dict[str, Any]]:
    sqs = boto3.client("sqs")
    found: list[dict[str, Any]] = []
    while len(found) < limit:
        messages = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=600).get(
            "Messages", []
        )
        if not messages:
            break
        for message in messages:
            try:
                document = json.loads(message["Body"])
            except ValueError:
                document = None
            if isinstance(document, dict) and "category" in document and "payload" in document:
                found.append({**document, "_shape": "envelope"})
            else:  # moved by the redrive policy after maxReceiveCount: the raw original body
                found.append(
                    {"message_id": message["MessageId"], "payload": message["Body"], "_shape": "redrive"}
                )
    return found


def live_target(args: argparse.Namespace) -> tuple[str, dict[str, Any]]:
    """--live: the real Portkey base URL and secret, from the environment or a file (never echoed)."""
    base_url = os.environ.get("PORTKEY_BASE_URL", "")
    text = args.secret_file.read_text() if args.secret_file else os.environ.get("PORTKEY_SECRET_JSON", "")
    if not base_url or not text:
        raise SystemExit("--live needs PORTKEY_BASE_URL and PORTKEY_SECRET_JSON (or --secret-file)")
    try:
        secret = json.loads(text)
    except ValueError:
        raise SystemExit("--live: the secret is not valid JSON") from None
    return base_url, secret


@dataclass(frozen=True)
class Route:
    """Where the function sends its calls, with which secret, and how to describe it."""

    base_url: str
    secret: dict[str, Any]
    mode: str
    portkey_line: str


def choose_route(
    live: tuple[str, dict[str, Any]] | None, stand_in: PortkeyStandIn, gateway: PortkeyGateway | None
) -> Route:
    if live is not None:
        base_url, secret = live
        return Route(base_url, secret, "live Portkey (your secret)", f"{base_url} (live)")
    if gateway is None:
        secret = {"api_key": LOCAL_API_KEY, "virtual_key": "vk-local"}
        mode = "virtual key, straight to the stand-in"
        return Route(stand_in.url, secret, mode, f"{stand_in.url} (local stand-in)")
    secret = {
        "api_key": LOCAL_API_KEY,
        "provider": "openai",
        "provider_auth": LOCAL_PROVIDER_TOKEN,
        "custom_host": stand_in.url,
    }
    portkey_line = (
        f"{gateway.url} (open-source gateway {gateway.version}, log {gateway.log_path})\n"
        f"custom host   {stand_in.url} (local stand-in)"
    )
    return Route(
        gateway.url, secret, "provider + provider_auth + custom_host, through the gateway", portkey_line
    )


def settings_line(args: argparse.Namespace, environment: dict[str, str], failures: int) -> str:
    fail = f"{args.fail_rate:g} (seed {args.seed}, {failures} scripted 503s)" if args.fail_rate else "0"
    return (
        f"settings      count {args.count}, threads {args.threads}, batch size {args.batch_size}, "
        f"window {args.window:g} s, max receive count {args.max_receive_count}, fail rate {fail}\n"
        f"function      MAX_ATTEMPTS {environment['MAX_ATTEMPTS']}, MAX_CONCURRENCY "
        f"{environment['MAX_CONCURRENCY']}, timeout {FUNCTION_TIMEOUT_S} s; queue visibility timeout "
        f"{VISIBILITY_TIMEOUT_S} s\n"
    )


@dataclass
class Processed:
    sent: dict[str, str]
    stats: PollStats
    direct_errors: dict[str, str]  # each EventBridge sample invoked directly: its error, "" when none
    seconds: float


def process(resources: LocalResources, args: argparse.Namespace) -> Processed:
    """Send everything, invoke the EventBridge path directly, drain the queue through the handler."""
    from handler import lambda_handler  # src/handler.py (installed by `make venv`): /var/task in Lambda

    started = time.monotonic()
    sent = send_all(resources.queue_url, sample_bodies() + generated_bodies(args.count, args.threads))
    events = {name: json.loads((EVENTS / name).read_text()) for name in EVENTBRIDGE_SAMPLES}
    put_on_bus(resources.bus_name, events[EVENTBRIDGE_SAMPLES[0]])  # bus → rule → source queue → poller
    direct_errors: dict[str, str] = {}
    for name, event in events.items():
        direct_errors[name] = ""
        try:  # the EventBridge → Lambda path: an asynchronous, direct invoke
            lambda_handler(event, LocalContext(timeout_s=FUNCTION_TIMEOUT_S))
        except Exception as error:
            direct_errors[name] = f"{type(error).__name__}: {error}"
    poller = SqsPoller(
        resources.queue_url,
        lambda_handler,
        batch_size=args.batch_size,
        window_s=args.window,
        function_timeout_s=FUNCTION_TIMEOUT_S,
    )
    stats = poller.drain(max_seconds=DRAIN_LIMIT_S)
    # The rule delivered the bus event to the queue under an id of its own: the one id received that
    # was not sent directly.
    for message_id in stats.receives_by_message.keys() - sent.keys():
        sent[message_id] = VIA_BUS
    return Processed(sent, stats, direct_errors, time.monotonic() - started)


def report(
    out: TextIO,
    args: argparse.Namespace,
    processed: Processed,
    logged: LoggedOutcomes,
    resources: LocalResources,
    stand_in: PortkeyStandIn,
) -> int:
    """Print the outcome tables and totals; the exit status (1: unsettled, crashed, or nothing applied)."""
    letters = dead_letters(resources.dlq_url)
    rows = outcome_rows(processed.sent, letters, logged, processed.stats.receives_by_message)
    message_table(out, rows, limit=args.rows)
    out.write("\n")
    for name, error in processed.direct_errors.items():
        out.write(f"EventBridge direct invoke (events/{name}): {error or APPLIED}\n")
    thread_ids = {record.thread_id for record in stand_in.requests if record.thread_id}
    thread_table(out, {thread_id: stand_in.thread(thread_id) for thread_id in thread_ids}, limit=args.rows)
    conversation_ids = {record.conversation_id for record in stand_in.requests if record.conversation_id}
    conversations = {
        conversation_id: stand_in.conversation(conversation_id) for conversation_id in conversation_ids
    }
    conversation_table(out, conversations, limit=args.rows)
    dead_letter_table(out, letters, limit=args.rows)
    out.write(f"\n{totals_line(rows, processed.stats.handed_back)}\n")
    stats = processed.stats
    out.write(
        f"Timings: send+process {processed.seconds:.2f} s ({stats.invocations} invocations, "
        f"{stats.received} receives, {len(stand_in.requests)} stand-in requests)\n"
    )
    unsettled = any(row.outcome == "still queued" for row in rows)
    nothing_applied = not any(row.outcome == APPLIED for row in rows) and all(
        processed.direct_errors.values()
    )
    return 1 if unsettled or stats.handler_errors or nothing_applied else 0


@contextlib.contextmanager
def optional_gateway(enabled: bool, log_file: Path) -> Iterator[PortkeyGateway | None]:
    """The real gateway when ``--gateway`` is given, else nothing (the function calls the stand-in)."""
    if not enabled:
        yield None
        return
    with PortkeyGateway(log_path=log_file) as gateway:
        yield gateway


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def environment_set(variables: dict[str, str]) -> Iterator[None]:
    """``variables`` in ``os.environ`` meanwhile; the previous values (or absence) restored after."""
    saved = {name: os.environ.get(name) for name in variables}
    os.environ.update(variables)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def run(args: argparse.Namespace, out: TextIO) -> int:
    live = live_target(args) if args.live else None
    args.log_file.parent.mkdir(parents=True, exist_ok=True)
    with (
        sigterm_as_interrupt(),
        moto_server() as endpoint,
        # Behind the gateway the stand-in is a custom host: x-portkey-* is stripped, a Bearer token arrives.
        PortkeyStandIn(
            api_keys=None if args.gateway else {LOCAL_API_KEY},
            auth_tokens={LOCAL_PROVIDER_TOKEN} if args.gateway else None,
        ) as stand_in,
        optional_gateway(args.gateway, args.log_file.with_name("local-run-gateway.log")) as gateway,
    ):
        serve_gone_targets(stand_in)
        route = choose_route(live, stand_in, gateway)
        resources = create_resources(
            endpoint,
            route.secret,
            max_receive_count=args.max_receive_count,
            visibility_timeout_s=VISIBILITY_TIMEOUT_S,
        )
        environment = function_environment(resources, route.base_url)
        failures = inject_failures(stand_in, args, max_attempts=int(environment["MAX_ATTEMPTS"]))
        out.write(
            f"moto server   {endpoint}\nPortkey       {route.portkey_line}\nmode          {route.mode}\n"
            f"{settings_line(args, environment, failures)}function log  {args.log_file}\n"
        )
        with (
            environment_set(environment),
            args.log_file.open("w") as log,
            recording(environment["POWERTOOLS_SERVICE_NAME"]) as logged,
        ):
            with contextlib.redirect_stdout(log):  # the function's logs and metrics go to the log file
                processed = process(resources, args)
            return report(out, args, processed, logged, resources, stand_in)


def until_interrupted(work: Callable[[], int]) -> int:
    """``work()``'s exit status, or 130 after Ctrl-C (or SIGTERM under :func:`sigterm_as_interrupt`)."""
    try:
        return work()
    except KeyboardInterrupt:
        sys.stdout.write("\ninterrupted: everything started was stopped\n")
        return 130


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return until_interrupted(lambda: run(args, sys.stdout))
    except GatewayUnavailable as error:  # --gateway without node or tools/gateway installed
        sys.stderr.write(f"--gateway: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
