"""Fixtures for the infrastructure checks: the AWS SAM CLI the project pins (``make sam``)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.conftest import in_ci

REPO_ROOT = Path(__file__).resolve().parents[2]
SAM_VENV = REPO_ROOT / ".venv-sam"
SAM_TIMEOUT_S = 110.0


def sam_environment(**extra: str) -> dict[str, str]:
    """Our environment without telemetry (no call home from tests), plus ``extra``."""
    return {**os.environ, "SAM_CLI_TELEMETRY": "0", **extra}


@pytest.fixture(scope="session")
def sam_cli() -> Path:
    """``.venv-sam/bin/sam`` (``make sam`` installs requirements-sam.txt there).

    Missing: the test fails in CI (``CI`` set) and is skipped elsewhere, like the gateway tests.
    """
    sam = SAM_VENV / "bin" / "sam"
    if not sam.is_file():
        message = f"the AWS SAM CLI is not installed ({sam} is missing); run `make sam`"
        if in_ci():
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return sam


def run_sam(sam: Path, *args: str, cwd: Path = REPO_ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the SAM CLI (bounded), capturing its output."""
    return subprocess.run(
        [str(sam), *args],
        cwd=cwd,
        env=sam_environment(**env),
        capture_output=True,
        text=True,
        timeout=SAM_TIMEOUT_S,
        check=False,
    )
