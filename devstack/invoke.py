"""Run one event file through the function the way Lambda does: ``make invoke EVENT=path.json``.

The ``sam local invoke`` of this project, without Docker. The function is built the way it ships
(``devstack.artifact``: ``src/requirements.txt`` installed with ``pip install -t`` plus ``src/``) and
started as Lambda starts it: AWS's own runtime interface client (``python -m awslambdaric
handler.lambda_handler``) in an interpreter that sees only the artifact and the client, polling a
local Runtime API (``devstack.runtime_api``). Its AWS side is moto with the template's resources
(``devstack.local_aws``), its Portkey the local stand-in, or a real Portkey with ``--live`` (as
``make run ARGS=--live``). The event is invoked once, synchronously; then it prints the function's
response (or its error), its log lines, every request the stand-in received and every dead letter,
and stops everything it started. Exit status: 0 when the function answered, 1 when the invocation
failed (an unhandled error, an init error, a timeout), 2 on a usage error (no such file, not JSON).

The execution environment (:func:`lambda_environment`, :func:`start_environment`,
:class:`LambdaProcess`) is the one the artifact tests (``tests/e2e/test_artifact.py``) run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, TextIO

from devstack import artifact
from devstack.local_aws import LOCAL_AWS_ENV, create_resources, function_environment, moto_server
from devstack.portkey_standin import PortkeyStandIn
from devstack.run import (
    LOCAL_API_KEY,
    choose_route,
    dead_letters,
    live_target,
    serve_gone_targets,
    sigterm_as_interrupt,
    until_interrupted,
)
from devstack.runtime_api import InvocationResult, RuntimeApi

__all__ = [
    "FUNCTION_ARN",
    "HANDLER",
    "LambdaProcess",
    "lambda_environment",
    "main",
    "start_environment",
]

HANDLER = "handler.lambda_handler"  # template.yaml: Handler
FUNCTION_NAME = "portkey-thread-updater-ModifyThreadFunction"
FUNCTION_ARN = f"arn:aws:lambda:us-east-1:123456789012:function:{FUNCTION_NAME}"
MEMORY_MB = "256"  # template.yaml: Globals.Function.MemorySize
FUNCTION_TIMEOUT_S = 60.0  # template.yaml: Globals.Function.Timeout
STOP_TIMEOUT_S = 5.0


def lambda_environment(
    task_root: Path,
    ric_dir: Path,
    *,
    handler: str = HANDLER,
    runtime_api: str | None = None,
    aws_endpoint: str | None = None,
    function_env: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment Lambda gives the runtime, and nothing from ours (no PYTHON*, proxies, venv)."""
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "PYTHONPATH": os.pathsep.join([str(task_root), str(ric_dir)]),
        "LAMBDA_TASK_ROOT": str(task_root),
        "LAMBDA_RUNTIME_DIR": str(ric_dir),
        "_HANDLER": handler,
        "AWS_EXECUTION_ENV": f"AWS_Lambda_python{sys.version_info.major}.{sys.version_info.minor}",
        "AWS_LAMBDA_FUNCTION_NAME": FUNCTION_NAME,
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": MEMORY_MB,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_LOG_GROUP_NAME": f"/aws/lambda/{FUNCTION_NAME}",
        "AWS_LAMBDA_LOG_STREAM_NAME": f"{time.strftime('%Y/%m/%d')}/[$LATEST]{uuid.uuid4().hex}",
        # template.yaml LoggingConfig: LogFormat JSON, ApplicationLogLevel INFO
        "AWS_LAMBDA_LOG_FORMAT": "JSON",
        "AWS_LAMBDA_LOG_LEVEL": "INFO",
        **LOCAL_AWS_ENV,
        "AWS_SESSION_TOKEN": "testing",
    }
    if runtime_api is not None:
        env["AWS_LAMBDA_RUNTIME_API"] = runtime_api
    if aws_endpoint is not None:
        env["AWS_ENDPOINT_URL"] = aws_endpoint
    env.update(function_env or {})
    return env


@dataclass
class LambdaProcess:
    """One execution environment: the runtime client process and the Runtime API it polls."""

    api: RuntimeApi
    process: subprocess.Popen[bytes]
    log_path: Path
    log_file: IO[bytes]
    watcher: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        # Fail waiting invokes as soon as the process ends, instead of at their timeout.
        self.watcher = threading.Thread(target=self._watch, name="lambda-process-watcher", daemon=True)
        self.watcher.start()

    def _watch(self) -> None:
        self.api.runtime_exited(self.process.wait())

    def invoke(self, event: Any, timeout_s: float = FUNCTION_TIMEOUT_S) -> InvocationResult:
        return self.api.invoke(event, timeout_s=timeout_s)

    def output(self) -> str:
        """Everything the runtime wrote to stdout/stderr so far (its CloudWatch log stream)."""
        if not self.log_file.closed:
            self.log_file.flush()
        return self.log_path.read_text(errors="replace")

    def stop(self) -> None:
        try:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_TIMEOUT_S)
            self.watcher.join(STOP_TIMEOUT_S)
        finally:
            self.api.stop()
            self.log_file.close()


def start_environment(
    task_root: Path,
    ric_dir: Path,
    log_path: Path,
    *,
    handler: str = HANDLER,
    aws_endpoint: str | None = None,
    function_env: dict[str, str] | None = None,
) -> LambdaProcess:
    """A Runtime API and ``python -m awslambdaric HANDLER`` polling it, its output in ``log_path``.

    The caller stops it (:meth:`LambdaProcess.stop`).
    """
    api = RuntimeApi(function_arn=FUNCTION_ARN).start()
    log_file = log_path.open("wb")
    try:
        env = lambda_environment(
            task_root,
            ric_dir,
            handler=handler,
            runtime_api=api.address,
            aws_endpoint=aws_endpoint,
            function_env=function_env,
        )
        process = subprocess.Popen(
            artifact.isolated_argv("-m", "awslambdaric", handler),
            cwd=task_root,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    except BaseException:
        api.stop()
        log_file.close()
        raise
    return LambdaProcess(api, process, log_path, log_file)


# --------------------------------------------------------------------------- make invoke


def environment_override(text: str) -> tuple[str, str]:
    """An argparse type: ``NAME=VALUE``."""
    name, equals, value = text.partition("=")
    if not equals or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not NAME=VALUE")
    return name, value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m devstack.invoke", description=__doc__.split("\n\n")[0]
    )
    add = parser.add_argument
    add("event", type=Path, help="the event file (JSON), e.g. events/sqs-batch.json")
    add(
        "--live",
        action="store_true",
        help="call a real Portkey (PORTKEY_BASE_URL, secret JSON from PORTKEY_SECRET_JSON or --secret-file)",
    )
    add("--secret-file", type=Path, help="--live: a file holding the Portkey secret JSON")
    add(
        "--env",
        type=environment_override,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="one more function variable (repeatable), e.g. --env MAX_ATTEMPTS=1",
    )
    add(
        "--timeout",
        type=float,
        default=FUNCTION_TIMEOUT_S,
        help=f"the invocation's timeout in seconds (template.yaml: {FUNCTION_TIMEOUT_S:g})",
    )
    args = parser.parse_args(argv)
    if not 0 < args.timeout <= 900:
        parser.error("--timeout must be within 0..900 seconds, as Lambda allows")
    try:
        args.document = json.loads(args.event.read_text())
    except OSError as error:
        parser.error(f"cannot read the event file {args.event}: {error.strerror}")
    except ValueError as error:
        parser.error(f"the event file {args.event} is not JSON: {error}")
    return args


@dataclass(frozen=True)
class Invoked:
    """What one invocation produced."""

    result: InvocationResult
    log_lines: list[str]
    letters: list[dict[str, Any]]
    requests: list[str] | None  # None: not seen (a real Portkey)
    seconds: float


def request_line(method: str, path: str, status: int, body: bytes) -> str:
    answer = str(status) if status else "dropped"
    return f"{method} {path} -> {answer}  {body.decode('utf-8', errors='replace')}"


def invoke_once(args: argparse.Namespace, task_root: Path, ric_dir: Path, work: Path) -> Invoked:
    live = live_target(args) if args.live else None
    with moto_server() as endpoint, PortkeyStandIn(api_keys={LOCAL_API_KEY}) as stand_in:
        serve_gone_targets(stand_in)
        route = choose_route(live, stand_in, None)
        resources = create_resources(endpoint, route.secret)
        environment = function_environment(resources, route.base_url, **dict(args.env))
        started = time.monotonic()
        function = start_environment(
            task_root, ric_dir, work / "function.log", aws_endpoint=endpoint, function_env=environment
        )
        try:
            result = function.invoke(args.document, timeout_s=args.timeout)
        except TimeoutError as error:
            result = InvocationResult(
                ok=False, payload=None, error={"errorType": "Sandbox.Timedout", "errorMessage": str(error)}
            )
        finally:
            seconds = time.monotonic() - started
            function.stop()  # every line written and flushed before it is read
        requests = [
            request_line(record.method, record.path, record.status, record.body)
            for record in stand_in.requests
        ]
        return Invoked(
            result=result,
            log_lines=function.output().splitlines(),
            letters=dead_letters(resources.dlq_url),
            requests=None if live else requests,
            seconds=seconds,
        )


def report(out: TextIO, invoked: Invoked) -> None:
    result = invoked.result
    if result.ok:
        out.write(f"\nResponse (request id {result.request_id}):\n{json.dumps(result.payload, indent=2)}\n")
    else:
        out.write(f"\nInvocation failed ({result.error_type}):\n{json.dumps(result.error, indent=2)}\n")
    out.write(f"\nLog lines ({len(invoked.log_lines)}):\n")
    out.writelines(f"  {line}\n" for line in invoked.log_lines)
    if invoked.requests is None:
        out.write("\nRequests to Portkey: sent to a real Portkey (--live), its log lines name each call\n")
    else:
        out.write(f"\nRequests to Portkey ({len(invoked.requests)}):\n")
        out.writelines(f"  {line}\n" for line in invoked.requests)
    out.write(f"\nDead letters ({len(invoked.letters)}):\n")
    for letter in invoked.letters:
        letter.pop("_shape", None)
        out.write(f"  {json.dumps(letter, sort_keys=True)}\n")


def run(args: argparse.Namespace, out: TextIO) -> int:
    started = time.monotonic()
    ric_dir = artifact.runtime_interface_client()
    artifact.BUILD_DIR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="invoke-", dir=artifact.BUILD_DIR) as work_dir:
        work = Path(work_dir)
        task_root = artifact.build_artifact(work / "task")
        built = time.monotonic() - started
        out.write(f"event         {args.event}\nartifact      {task_root} ({HANDLER}, awslambdaric)\n")
        with sigterm_as_interrupt():
            invoked = invoke_once(args, task_root, ric_dir, work)
    report(out, invoked)
    out.write(
        f"\nTimings: artifact {built:.2f} s, start + invoke {invoked.seconds:.2f} s (a cold start), "
        f"total {time.monotonic() - started:.2f} s\n"
    )
    return 0 if invoked.result.ok else 1


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return until_interrupted(lambda: run(args, sys.stdout))


if __name__ == "__main__":
    sys.exit(main())
