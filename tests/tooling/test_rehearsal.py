"""``make up`` / ``make down``: a local stack left running for rehearsing the DLQ tool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tooling.dlq_support import REPO_ROOT

BOUND_S = 60.0


def python_m(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *argv],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[dict[str, str]]:
    """`python -m devstack.up start` (what `make up` runs); always stopped at the end."""
    started = python_m("devstack.up", "start", "--state-dir", str(tmp_path))
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert "source " in started.stdout
        exported = dict(
            line.removeprefix("export ").split("=", 1)
            for line in (tmp_path / "env.sh").read_text().splitlines()
        )
        base = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
        yield {**base, **exported}
    finally:
        stopped = python_m("devstack.up", "stop", "--state-dir", str(tmp_path))
        assert stopped.returncode == 0, stopped.stderr
    pid_file = tmp_path / "pid"
    assert not pid_file.exists()
    assert not (tmp_path / "env.sh").exists()


def inspect(env: dict[str, str]) -> dict[str, Any]:
    completed = python_m("ops.dlq", "inspect", "--json", env=env)
    assert completed.returncode == 0, completed.stderr
    document: dict[str, Any] = json.loads(completed.stdout)
    return document


def test_rehearse_inspect_and_replay_then_stop(stack: dict[str, str]) -> None:
    """Given `make up`, then the printed variables are all the DLQ tool needs: inspect shows the seeded
    letters of each kind, a replay of the 404s succeeds now that the thread is served (the running
    function applies them) and `make down` stops everything."""
    document = inspect(stack)
    kinds = sorted((group["category"], group["status"], group["source"]) for group in document["groups"])
    assert ("rejected", 404, "sqs") in kinds
    assert ("validation", None, "sqs") in kinds
    assert ("async-failure", 503, "eventbridge") in kinds
    assert document["read"] == 5

    replay = python_m("ops.dlq", "replay", "--category", "rejected", "--status", "404", env=stack)

    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "selected 2, replayed 2," in replay.stdout
    deadline = time.monotonic() + BOUND_S
    while inspect(stack)["read"] != 3:  # the function applies the copies: nothing new is dead-lettered
        assert time.monotonic() < deadline
        time.sleep(0.2)  # polling interval of a condition
    bus_replay = python_m("ops.dlq", "replay", "--category", "async-failure", env=stack)
    assert bus_replay.returncode == 0, bus_replay.stdout + bus_replay.stderr
    assert f"-> bus {stack['EVENT_BUS_NAME']}" in bus_replay.stdout
