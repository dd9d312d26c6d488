"""The deployable artifact, run by AWS's own runtime interface client in a clean interpreter.

The function is built the way ``sam build`` ships it (``devstack.artifact``), then started as Lambda
starts it: ``python -m awslambdaric handler.lambda_handler`` with the task root as working
directory, talking to a local Runtime API (``devstack.runtime_api``). The interpreter sees only the
stdlib, the artifact and the runtime client, never this virtualenv, so a dependency missing from
``src/requirements.txt`` or a wrong ``Handler`` fails here as it would on Lambda.
"""

from __future__ import annotations

import http.client
import json
import site
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from devstack import artifact
from devstack.invoke import (
    FUNCTION_ARN,
    HANDLER,
    LambdaProcess,
    lambda_environment,
    start_environment,
)
from devstack.portkey_standin import PortkeyStandIn
from devstack.runtime_api import InvocationResult, RuntimeApi
from tests.conftest import AwsResources
from tests.samples import CHECKS, load
from tools.package import build_package

# One worker runs the module under xdist (`make pytest`): its module fixtures (the artifact, the
# python3.12 package) are built once, not once per worker.
pytestmark = pytest.mark.xdist_group("artifact")

INVOKE_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 5.0
PROBE_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def ric_dir() -> Path:
    """awslambdaric on its own: on Lambda it is part of the runtime, not of the artifact."""
    return artifact.runtime_interface_client()


@pytest.fixture(scope="module")
def task_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The artifact as Lambda unpacks it into /var/task."""
    return artifact.build_artifact(tmp_path_factory.mktemp("artifact") / "task")


class Launcher(Protocol):
    def __call__(self, root: Path, handler: str = HANDLER) -> LambdaProcess: ...


@pytest.fixture
def launch(
    ric_dir: Path, moto_endpoint: str, function_env: dict[str, str], tmp_path: Path
) -> Iterator[Launcher]:
    """Start execution environments for an artifact; every one is stopped when the test ends."""
    started: list[LambdaProcess] = []

    def start(root: Path, handler: str = HANDLER) -> LambdaProcess:
        log_path = tmp_path / f"runtime-{len(started)}.log"
        environment = start_environment(
            root, ric_dir, log_path, handler=handler, aws_endpoint=moto_endpoint, function_env=function_env
        )
        started.append(environment)
        return environment

    try:
        yield start
    finally:
        for environment in reversed(started):
            environment.stop()


@pytest.fixture
def function(launch: Launcher, task_root: Path) -> LambdaProcess:
    return launch(task_root)


def expect_ok(environment: LambdaProcess, result: InvocationResult) -> Any:
    assert result.ok, f"invocation failed: {result.error}\n--- runtime output ---\n{environment.output()}"
    return result.payload


# --------------------------------------------------------------------------- the Runtime API stand-in


def runtime_call(
    api: RuntimeApi, method: str, path: str, body: Any = None
) -> tuple[int, dict[str, str], Any]:
    connection = http.client.HTTPConnection(api.host, api.port, timeout=5)
    try:
        payload = None if body is None else json.dumps(body).encode()
        connection.request(method, path, payload, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), json.loads(response.read())
    finally:
        connection.close()


def test_the_runtime_api_speaks_the_protocol_the_runtime_client_expects() -> None:
    with RuntimeApi(function_arn=FUNCTION_ARN, next_wait_s=5, result_grace_s=0) as api:
        outcome: list[InvocationResult] = []
        invoker = threading.Thread(target=lambda: outcome.append(api.invoke({"n": 1}, timeout_s=5)))
        invoker.start()

        # /next hands out the queued event with Lambda's headers
        status, headers, event = runtime_call(api, "GET", "/2018-06-01/runtime/invocation/next")
        assert (status, event) == (200, {"n": 1})
        request_id = headers["Lambda-Runtime-Aws-Request-Id"]
        assert headers["Lambda-Runtime-Invoked-Function-Arn"] == FUNCTION_ARN
        assert headers["Lambda-Runtime-Trace-Id"].startswith("Root=1-")
        assert 0 < int(headers["Lambda-Runtime-Deadline-Ms"]) - time.time() * 1000 <= 5000

        # the response completes the invoke; a second answer for the same request is refused
        response_path = f"/2018-06-01/runtime/invocation/{request_id}/response"
        assert runtime_call(api, "POST", response_path, {"done": True})[0] == 202
        invoker.join(5)
        assert outcome == [
            InvocationResult(ok=True, payload={"done": True}, error=None, request_id=request_id)
        ]
        assert runtime_call(api, "POST", response_path, {"done": False})[0] == 400

        # an event nobody takes times out (bounded) and is withdrawn from the queue
        with pytest.raises(TimeoutError, match="never taken"):
            api.invoke({"n": 2}, timeout_s=0.05)

        # an init error fails invocations right away, as Lambda reports it
        error = {"errorMessage": "boom", "errorType": "Runtime.ImportModuleError", "stackTrace": []}
        assert runtime_call(api, "POST", "/2018-06-01/runtime/init/error", error)[0] == 202
        assert api.init_error == error
        failed = api.invoke({"n": 3}, timeout_s=5)
        assert (failed.ok, failed.error) == (False, error)


# --------------------------------------------------------------------------- isolation

PROBE = """
import importlib.util, json, sys
names = sys.argv[1:]
origins = {}
for name in names:
    spec = importlib.util.find_spec(name)
    origins[name] = None if spec is None else (spec.origin or list(spec.submodule_search_locations or []))
print(json.dumps({"origins": origins, "path": sys.path, "no_site": sys.flags.no_site}))
"""


def test_the_runtime_interpreter_sees_only_the_artifact_and_the_runtime_client(
    task_root: Path, ric_dir: Path
) -> None:
    # Given the interpreter set-up the function runs with (same flags, environment and directory)
    not_importable = ["moto", "pytest", "_pytest", "mypy", "hypothesis", "cfnlint", "samtranslator"]
    not_importable += ["devstack", "tests"]  # this repository's development code
    from_artifact = ["handler", "thread_updater", "aws_lambda_powertools", "boto3", "botocore", "urllib3"]
    from_artifact += ["pydantic", "pydantic_core"]
    from_ric = ["awslambdaric", "runtime_client", "simplejson"]

    # When it reports where each module would come from
    completed = subprocess.run(
        artifact.isolated_argv("-c", PROBE, *not_importable, *from_artifact, *from_ric),
        cwd=task_root,
        env=lambda_environment(task_root, ric_dir),
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=True,
    )
    report = json.loads(completed.stdout)
    origins: dict[str, Any] = report["origins"]

    # Then nothing of the virtualenv (or any other site-packages) is on its path, the function's
    # code and dependencies come from the artifact and the runtime client from its own directory
    assert report["no_site"] == 1
    assert {name: origins[name] for name in not_importable} == dict.fromkeys(not_importable)
    for name in from_artifact:
        assert str(origins[name]).startswith(str(task_root)), (name, origins[name])
    for name in from_ric:
        assert str(origins[name]).startswith(str(ric_dir)), (name, origins[name])
    our_site = [*site.getsitepackages(), site.getusersitepackages()]
    assert not [entry for entry in report["path"] if any(entry.startswith(path) for path in our_site)]


def test_the_artifact_has_the_sources_but_no_requirements_file_or_bytecode(task_root: Path) -> None:
    assert (task_root / "handler.py").read_bytes() == (artifact.SRC / "handler.py").read_bytes()
    sources = sorted(path.relative_to(artifact.SRC) for path in artifact.SRC.rglob("*.py"))
    assert sources
    assert all((task_root / path).is_file() for path in sources)
    assert not (task_root / "requirements.txt").exists()
    assert not list((task_root / "thread_updater").rglob("*.pyc"))


# --------------------------------------------------------------------------- the python3.13 package

LAMBDA_PACKAGE_PROBE = """
import importlib, json, sys
results = {}
for name in sys.argv[1:]:
    try:
        module = importlib.import_module(name)
    except ImportError as error:
        results[name] = {"missing": error.name}
    else:
        results[name] = {"origin": module.__file__}
import boto3
queues = boto3.client("sqs").list_queues(QueueNamePrefix="lambda-package-probe")
print(json.dumps({"imports": results, "boto3": boto3.__file__, "queues": queues.get("QueueUrls", [])}))
"""


@pytest.fixture(scope="module")
def lambda_package_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The function as `make package` builds it: compiled modules for CPython 3.13 on x86_64 only."""
    project = tmp_path_factory.mktemp("lambda-package")
    return build_package(out_dir=project / "build", deploy_dir=project / "build" / "deploy").directory


def _importable_names(root: Path) -> list[str]:
    """Every top-level module or package of the artifact, and every module of the function's code."""
    names = {path.stem for path in root.glob("*.py")}
    names |= {path.name for path in root.iterdir() if (path / "__init__.py").is_file()}
    for path in (root / "thread_updater").rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return sorted(names)


def test_the_lambda_package_runs_its_pure_python_parts_here(
    lambda_package_root: Path, ric_dir: Path, moto_endpoint: str
) -> None:
    # Given the python3.13 package, on this interpreter set up as the runtime would be
    names = _importable_names(lambda_package_root)
    env = lambda_environment(lambda_package_root, ric_dir, aws_endpoint=moto_endpoint)

    # When every module of it is imported and its boto3 makes an AWS call
    completed = subprocess.run(
        artifact.isolated_argv("-c", LAMBDA_PACKAGE_PROBE, *names),
        cwd=lambda_package_root,
        env=env,
        capture_output=True,
        text=True,
        timeout=PROBE_TIMEOUT_S,
        check=True,
    )
    report = json.loads(completed.stdout)
    imports: dict[str, dict[str, str]] = report["imports"]

    # Then the pure-Python parts import from the package and its AWS SDK works; the only thing this
    # interpreter cannot load is pydantic-core's CPython 3.13 binary (and what imports it), which
    # the venv's own pydantic-core cannot stand in for
    compiled = "pydantic_core._pydantic_core"
    loaded = {name for name, result in imports.items() if "origin" in result}
    assert {"urllib3", "boto3", "botocore", "aws_lambda_powertools", "thread_updater"} <= loaded
    for name in loaded:
        assert imports[name]["origin"].startswith(str(lambda_package_root)), name
    assert {result["missing"] for name, result in imports.items() if name not in loaded} == {compiled}
    assert {"pydantic_core", "pydantic", "handler"} <= set(imports) - loaded
    assert report["boto3"].startswith(str(lambda_package_root))
    assert report["queues"] == []


# --------------------------------------------------------------------------- the event samples


@pytest.mark.parametrize("name", CHECKS)
def test_event_sample(name: str, function: LambdaProcess, portkey: PortkeyStandIn, aws: AwsResources) -> None:
    # Given a sample of events/ (tests/samples.py: every one of them, and what it must produce)
    event = load(name)

    # When Lambda invokes the deployed function with it, Then it behaves as the in-process handler does
    CHECKS[name](event, expect_ok(function, function.invoke(event)), portkey, aws)


def test_one_environment_serves_invocations_one_after_another(
    function: LambdaProcess, portkey: PortkeyStandIn
) -> None:
    # Given a warm environment (the first invoke was the cold start)
    event = load("eventbridge.json")
    expect_ok(function, function.invoke(event))

    # When it is invoked again
    result = function.invoke(event)

    # Then the same process answers, and both updates reached Portkey
    assert expect_ok(function, result) is None
    assert function.process.poll() is None
    assert len(portkey.requests) == 2
    output = function.output()
    assert result.request_id in output  # the function's JSON logs carry Lambda's request id


def test_an_unhandled_error_is_reported_and_the_environment_survives(
    function: LambdaProcess, portkey: PortkeyStandIn
) -> None:
    # Given an event the function does not support
    result = function.invoke({"hello": "world"})

    # Then the runtime reports the exception as the invocation's error
    assert not result.ok
    assert result.error is not None
    assert result.error["errorType"] == result.error_type == "ValueError", function.output()
    assert "unsupported event" in result.error["errorMessage"]
    assert result.error["requestId"] == result.request_id
    # and the log stream stays JSON: no raw "UserWarning: No application metrics to publish" line
    # from Powertools for an invocation that failed before it counted anything
    lines = function.output().splitlines()
    assert lines
    not_json = [line for line in lines if not line.startswith("{")]
    assert not_json == [], function.output()

    # And the same environment goes on serving invocations
    assert expect_ok(function, function.invoke(load("eventbridge.json"))) is None
    assert function.process.poll() is None
    assert len(portkey.requests) == 1


# --------------------------------------------------------------------------- broken artifacts


def test_a_wrong_handler_name_fails_the_init_phase(
    launch: Launcher, task_root: Path, portkey: PortkeyStandIn
) -> None:
    # Given the artifact started with a typo in the Handler setting
    environment = launch(task_root, handler="handler.lambda_handlr")

    # When it is invoked
    result = environment.invoke(load("eventbridge.json"))

    # Then Lambda reports the init failure, the runtime exits, and nothing reached Portkey
    assert not result.ok
    assert result.error is not None
    assert result.error["errorType"] == result.error_type == "Runtime.HandlerNotFound", environment.output()
    assert environment.api.init_error == result.error
    assert environment.process.wait(timeout=STOP_TIMEOUT_S) != 0
    assert portkey.requests == []


def test_an_artifact_missing_a_dependency_fails_to_import_its_handler(
    launch: Launcher, tmp_path: Path, portkey: PortkeyStandIn
) -> None:
    # Given an artifact built without urllib3 (as if it were missing from src/requirements.txt)
    broken = artifact.build_artifact(tmp_path / "broken-task", omit=["urllib3"])
    assert not (broken / "urllib3").exists()

    # When it is invoked
    environment = launch(broken)
    result = environment.invoke(load("eventbridge.json"))

    # Then the handler module cannot be imported, as on Lambda: the venv's urllib3 does not mask it
    assert not result.ok
    assert result.error is not None
    assert result.error["errorType"] == result.error_type == "Runtime.ImportModuleError", environment.output()
    assert "urllib3" in result.error["errorMessage"]
    assert environment.process.wait(timeout=STOP_TIMEOUT_S) != 0
    assert portkey.requests == []
