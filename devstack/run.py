"""Run the whole loop on this machine: moto SQS/Secrets Manager/EventBridge, the Portkey stand-in,
the poller, and the real ``lambda_handler``. ``make run`` (``python -m devstack.run``).

It sends the ``events/`` samples (plus ``--count`` generated updates), drains the queue through the
handler, prints each message's outcome, the final thread states, the DLQ and timings, then stops
everything it started, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from collections.abc import Iterator, Sequence
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, TextIO

import boto3

from devstack.gateway import GatewayUnavailable, PortkeyGateway
from devstack.lambda_events import LocalContext
from devstack.local_aws import (
    LocalResources,
    create_resources,
    function_environment,
    moto_server,
)
from devstack.poller import PollStats, SqsPoller
from devstack.portkey_standin import PortkeyStandIn, Reply

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "events"
LOCAL_API_KEY = "pk-local-demo-key"
LOCAL_PROVIDER_TOKEN = "sk-local-provider-token"  # --gateway: the Bearer token the stand-in accepts
GONE_THREAD = "thread_gone"  # answers 404, as a thread behind a sunset Assistants API would


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devstack.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=0, help="also send N generated updates (default 0)")
    parser.add_argument("--threads", type=int, default=20, help="threads the generated updates spread over")
    parser.add_argument("--batch-size", type=int, default=10, help="event source mapping BatchSize")
    parser.add_argument("--window", type=float, default=0.5, help="MaximumBatchingWindowInSeconds")
    parser.add_argument("--max-receive-count", type=int, default=3, help="redrive policy maxReceiveCount")
    parser.add_argument(
        "--gateway",
        action="store_true",
        help="go through the real Portkey gateway (tools/gateway) to the stand-in as a custom host",
    )
    parser.add_argument(
        "--live",
        action="store_true",
        help="call a real Portkey (PORTKEY_BASE_URL, secret JSON from PORTKEY_SECRET_JSON or --secret-file); "
        "queues stay local",
    )
    parser.add_argument("--secret-file", type=Path, help="--live: a file holding the Portkey secret JSON")
    parser.add_argument(
        "--log-file",
        type=Path,
        default=ROOT / "build" / "local-run.log",
        help="where the function's JSON logs and EMF metrics go",
    )
    return parser.parse_args(argv)


def sample_bodies() -> list[str]:
    """SQS bodies from the samples: the SQS batch and the EventBridge-through-SQS batch."""
    bodies: list[str] = []
    for name in ("sqs-batch.json", "eventbridge-via-sqs.json"):
        bodies += [record["body"] for record in json.loads((EVENTS / name).read_text())["Records"]]
    return bodies


def generated_bodies(count: int, threads: int) -> list[str]:
    bodies = []
    for index in range(count):
        thread_id = GONE_THREAD if index % 50 == 49 else f"thread_gen_{index % threads}"
        bodies.append(json.dumps({"thread_id": thread_id, "metadata": {"sequence": str(index)}}))
    return bodies


VIA_BUS = "(EventBridge bus: events/eventbridge.json)"


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


def logged_successes(log_file: Path) -> set[str]:
    """Message ids of the function's ``update success`` log lines (the gateway does not forward trace ids)."""
    found = set()
    for line in log_file.read_text().splitlines():
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict) and document.get("message") == "update success":
                found.add(str(document.get("message_id")))
    return found


def outcome_rows(
    sent: dict[str, str],
    letters: list[dict[str, Any]],
    stand_in: PortkeyStandIn,
    stats: PollStats,
    applied: AbstractSet[str | None] | None = None,
) -> list[tuple[str, str, str, str, str]]:
    if applied is None:
        applied = {r.headers.get("x-portkey-trace-id") for r in stand_in.requests if 200 <= r.status < 300}
    by_id = {letter["message_id"]: letter for letter in letters}
    rows = []
    for message_id, body in sent.items():
        receives = str(stats.receives_by_message.get(message_id, 0))
        letter = by_id.get(message_id)
        if letter is None:
            outcome, reason = ("applied", "") if message_id in applied else ("still queued", "")
        elif letter["_shape"] == "redrive":
            outcome, reason = "dead-lettered (redrive)", f"failed {receives} receives"
        else:
            status = f", {letter['status']}" if letter["status"] else ""
            outcome = f"dead-lettered ({letter['category']}{status})"
            reason = letter["error"]
        rows.append((message_id[:8], body[:48], outcome, receives, reason[:70]))
    return rows


def print_table(out: TextIO, header: tuple[str, ...], rows: Sequence[tuple[str, ...]]) -> None:
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows, strict=False)]
    for row in [header, tuple("-" * width for width in widths), *rows]:
        out.write(
            "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)).rstrip()
            + "\n"
        )


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


def run(args: argparse.Namespace, out: TextIO) -> int:
    live = live_target(args) if args.live else None
    started = time.monotonic()
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
        args.log_file.open("w") as log,
    ):
        stand_in.always(
            GONE_THREAD,
            Reply(
                status=404,
                body={
                    "error": {
                        "message": f"No thread found with id '{GONE_THREAD}'.",
                        "type": "invalid_request_error",
                    }
                },
            ),
        )
        if live is not None:
            base_url, secret = live
            mode, portkey_line = "live Portkey (your secret)", f"{base_url} (live)"
        elif gateway is None:
            secret = {"api_key": LOCAL_API_KEY, "virtual_key": "vk-local"}
            base_url, mode = stand_in.url, "virtual key, straight to the stand-in"
            portkey_line = f"{stand_in.url} (local stand-in)"
        else:
            secret = {
                "api_key": LOCAL_API_KEY,
                "provider": "openai",
                "provider_auth": LOCAL_PROVIDER_TOKEN,
                "custom_host": stand_in.url,
            }
            base_url, mode = gateway.url, "provider + provider_auth + custom_host, through the gateway"
            portkey_line = (
                f"{gateway.url} (open-source gateway {gateway.version}, log {gateway.log_path})\n"
                f"custom host   {stand_in.url} (local stand-in)"
            )
        resources: LocalResources = create_resources(
            endpoint, secret, max_receive_count=args.max_receive_count
        )
        environment = function_environment(resources, base_url)
        saved_environment = {name: os.environ.get(name) for name in environment}
        os.environ.update(environment)
        out.write(
            f"moto server   {endpoint}\nPortkey       {portkey_line}\nmode          {mode}\n"
            f"function log  {args.log_file}\n\n"
        )
        with contextlib.redirect_stdout(log):  # the function's logs and metrics go to the log file
            sys.path.insert(0, str(ROOT / "src"))  # what /var/task is in Lambda
            from handler import lambda_handler

            setup_done = time.monotonic()
            bodies = sample_bodies() + generated_bodies(args.count, args.threads)
            sent = send_all(resources.queue_url, bodies)
            eventbridge = json.loads((EVENTS / "eventbridge.json").read_text())
            put_on_bus(resources.bus_name, eventbridge)  # bus → rule → source queue → poller
            direct_error = ""
            try:  # the EventBridge → Lambda path: an asynchronous, direct invoke
                lambda_handler(eventbridge, LocalContext(timeout_s=60))
            except Exception as error:
                direct_error = f"{type(error).__name__}: {error}"
            poller = SqsPoller(
                resources.queue_url,
                lambda_handler,
                batch_size=args.batch_size,
                window_s=args.window,
                function_timeout_s=60,
            )
            stats = poller.drain(max_seconds=120)
            drained = time.monotonic()
        # The rule delivered the bus event to the queue under an id of its own: the one id received
        # that was not sent directly.
        for message_id in stats.receives_by_message.keys() - sent.keys():
            sent[message_id] = VIA_BUS
        letters = dead_letters(resources.dlq_url)
        log.flush()
        # Through the gateway or to a live Portkey, the stand-in does not see trace ids: read our log instead.
        applied = logged_successes(args.log_file) if gateway is not None or live is not None else None
        rows = outcome_rows(sent, letters, stand_in, stats, applied)
        out.write(f"Messages ({len(rows)})\n")
        print_table(out, ("message", "body", "outcome", "receives", "reason"), rows)
        out.write(f"\nEventBridge direct invoke (events/eventbridge.json): {direct_error or 'applied'}\n")
        thread_ids = sorted({r.thread_id for r in stand_in.requests if r.thread_id})
        out.write(f"\nFinal thread states ({len(thread_ids)})\n")
        states = []
        for thread_id in thread_ids[:40]:
            thread = stand_in.thread(thread_id)
            states.append(
                (
                    thread_id,
                    json.dumps(thread and thread.get("metadata"))[:60],
                    json.dumps(thread and thread.get("tool_resources"))[:40],
                )
            )
        print_table(out, ("thread", "metadata", "tool_resources"), states)
        out.write(f"\nDead-letter queue ({len(letters)})\n")
        print_table(
            out,
            ("message", "shape", "category", "status", "thread", "error"),
            [
                (
                    letter["message_id"][:8],
                    letter["_shape"],
                    letter.get("category", "-"),
                    str(letter.get("status") or "-"),
                    str(letter.get("thread_id") or "-"),
                    str(letter.get("error", "(original body, no envelope)"))[:60],
                )
                for letter in letters
            ],
        )
        out.write(
            f"\nTimings: setup {setup_done - started:.2f} s, send+process {drained - setup_done:.2f} s "
            f"({stats.invocations} invocations, {stats.received} receives, "
            f"{len(stand_in.requests)} Portkey requests), "
            f"total {time.monotonic() - started:.2f} s\n"
        )
        for name, value in saved_environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        unsettled = [row for row in rows if row[2] == "still queued"]
        return 1 if unsettled or stats.handler_errors else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        return run(args, sys.stdout)
    except KeyboardInterrupt:
        sys.stdout.write("\ninterrupted: everything started was stopped\n")
        return 130
    except GatewayUnavailable as error:  # --gateway without node or tools/gateway installed
        sys.stderr.write(f"--gateway: {error}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
