"""A local stack left running, to rehearse the DLQ tool: ``make up`` / ``make down``.

``start`` launches ``serve`` in the background and returns once the stack is ready, printing the
variables to export (also written to ``<state-dir>/env.sh``). ``serve`` runs moto with the template's
resources (source queue with its redrive policy, DLQ, secret, an event bus whose rule targets the
source queue), the Portkey stand-in and the function behind the poller, and seeds the DLQ with one
letter of each kind an operator meets: invalid messages (``validation``), updates of a thread the
upstream did not know (``rejected``/404) and a failed asynchronous EventBridge invoke
(``async-failure``). Once seeded, the stand-in serves that thread, as if the route had been fixed, so
a replay succeeds; invalid messages fail again and come back as new letters. ``stop`` ends ``serve``
(SIGTERM), which stops everything it started.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from types import FrameType

import boto3

from devstack.local_aws import LOCAL_AWS_ENV, create_resources, function_environment, moto_server
from devstack.poller import SqsPoller
from devstack.portkey_standin import PortkeyStandIn, Reply

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = ROOT / "build" / "devstack"
LOCAL_API_KEY = "pk-local-rehearsal-key"
GONE_THREAD = "thread_gone"
READY_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


def seed(queue_url: str, dlq_url: str, poller: SqsPoller) -> None:
    """Dead letters of every kind an operator meets, written the way production writes them."""
    sqs = boto3.client("sqs")
    bodies = [
        json.dumps({"thread_id": "thread_invalid", "metadata": "not an object"}),
        "not json at all",
        json.dumps({"thread_id": GONE_THREAD, "metadata": {"step": "1"}}),
        json.dumps({"thread_id": GONE_THREAD, "metadata": {"step": "2"}}),
        json.dumps({"thread_id": "thread_ok", "metadata": {"step": "applied"}}),
    ]
    for body in bodies:
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    poller.drain(max_seconds=60)
    record = {  # what Lambda's on-failure destination writes for a failed asynchronous invoke
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": str(uuid.uuid4()),
            "condition": "RetriesExhausted",
            "approximateInvokeCount": 3,
        },
        "requestPayload": json.loads((ROOT / "events" / "eventbridge.json").read_text()),
        "responsePayload": {
            "errorType": "UpdateNotApplied",
            "errorMessage": "HTTP 503: upstream unavailable",
        },
    }
    sqs.send_message(QueueUrl=dlq_url, MessageBody=json.dumps(record))


def environment_lines(values: dict[str, str]) -> str:
    return "".join(f"export {name}={value}\n" for name, value in values.items())


def serve(state_dir: Path) -> int:
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with moto_server() as endpoint, PortkeyStandIn(api_keys={LOCAL_API_KEY}) as stand_in:
        stand_in.always(GONE_THREAD, Reply(status=404))
        resources = create_resources(endpoint, {"api_key": LOCAL_API_KEY, "virtual_key": "vk-local"})
        os.environ.update(function_environment(resources, stand_in.url))
        from handler import lambda_handler  # src/handler.py (installed by `make venv`): /var/task in Lambda

        # window 1 s: each idle round long-polls for a second instead of spinning
        poller = SqsPoller(resources.queue_url, lambda_handler, window_s=1.0, function_timeout_s=30)
        seed(resources.queue_url, resources.dlq_url, poller)
        stand_in.forget_always(GONE_THREAD)  # the route is "fixed": replays of the 404s now succeed
        worker = threading.Thread(target=lambda: _poll_until(stop, poller), name="poller", daemon=True)
        worker.start()
        variables = {
            **LOCAL_AWS_ENV,
            "AWS_ENDPOINT_URL": endpoint,
            "DLQ_URL": resources.dlq_url,
            "SOURCE_QUEUE_URL": resources.queue_url,
            "EVENT_BUS_NAME": resources.bus_name,
            **({"THREAD_STATE_TABLE": resources.state_table} if resources.state_table else {}),
        }
        (state_dir / "env.sh").write_text(environment_lines(variables))
        stop.wait()
        worker.join(timeout=STOP_TIMEOUT_S)
    (state_dir / "env.sh").unlink(missing_ok=True)
    return 0


def _poll_until(stop: threading.Event, poller: SqsPoller) -> None:
    while not stop.is_set():
        try:
            poller.poll_once()
        except Exception as error:  # keep the rehearsal alive; the log says what happened
            print(f"poller: {type(error).__name__}: {error}", flush=True)
            stop.wait(1.0)


def _running_pid(state_dir: Path) -> int | None:
    try:
        pid = int((state_dir / "pid").read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def start(state_dir: Path) -> int:
    state_dir.mkdir(parents=True, exist_ok=True)
    env_file = state_dir / "env.sh"
    if _running_pid(state_dir) is None:
        env_file.unlink(missing_ok=True)
        with (state_dir / "stack.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "devstack.up", "serve", "--state-dir", str(state_dir)],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # outlives `make up`; `make down` ends it
            )
        (state_dir / "pid").write_text(str(process.pid))
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not env_file.exists():
            if process.poll() is not None or time.monotonic() > deadline:
                print(f"the local stack did not start; see {state_dir / 'stack.log'}", file=sys.stderr)
                process.terminate()
                process.wait(timeout=STOP_TIMEOUT_S)
                (state_dir / "pid").unlink(missing_ok=True)
                return 1
            time.sleep(0.1)  # polling for the ready file the child writes
    print(f"Local stack running (log {state_dir / 'stack.log'}). In your shell:\n")
    print(f"  source {env_file}\n")
    print(env_file.read_text())
    print("then: make dlq ARGS=inspect    ...    make down")
    return 0


def stop(state_dir: Path) -> int:
    pid = _running_pid(state_dir)
    if pid is not None:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _running_pid(state_dir) is not None and time.monotonic() < deadline:
            time.sleep(0.1)  # polling for the process to exit
        if _running_pid(state_dir) is not None:
            os.kill(pid, signal.SIGKILL)
    for name in ("pid", "env.sh"):
        (state_dir / name).unlink(missing_ok=True)
    print("local stack stopped" if pid is not None else "no local stack was running")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m devstack.up", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("action", choices=["start", "stop", "serve"])
    parser.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="pid, env.sh and log")
    args = parser.parse_args(argv)
    if args.action == "serve":
        return serve(args.state_dir)
    if args.action == "start":
        return start(args.state_dir)
    return stop(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
