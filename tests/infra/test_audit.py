"""`make security`'s known-vulnerability audit (tools/audit.py): a headline that says what was audited.

pip-audit alone prints "No known vulnerabilities found" even when it could look up none of the
packages and lists every one of them as skipped; the wrapper's headline counts them instead.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from tools.audit import DEFAULT_REQUIREMENTS, REPO_ROOT, summarise

AUDITED = {"name": "urllib3", "version": "2.8.0", "vulns": []}
SKIPPED = {
    "name": "boto3",
    "skip_reason": "Dependency not found on PyPI and could not be audited: boto3 (1.43.11)",
}
VULNERABLE = {
    "name": "jinja2",
    "version": "3.1.2",
    "vulns": [{"id": "GHSA-h5c8-rqwp-cp95", "fix_versions": ["3.1.3"], "aliases": [], "description": "…"}],
}


def _report(*dependencies: dict[str, Any]) -> dict[str, Any]:
    return {"dependencies": list(dependencies), "fixes": []}


def test_every_package_skipped_is_no_clean_result() -> None:
    # GIVEN a report in which pip-audit could look up no package
    summary = summarise(_report(SKIPPED, {**SKIPPED, "name": "pydantic"}))

    # WHEN the headline is written
    headline = summary.headline("src/requirements.txt")

    # THEN it counts them as not audited and claims nothing about vulnerabilities
    assert headline.startswith(
        "pip-audit: 2 package(s) resolved from src/requirements.txt, 0 audited, 2 NOT audited"
    )
    assert "nothing was audited" in headline
    assert "no known vulnerabilities" not in headline.lower()
    # and it fails only when asked to be strict
    assert summary.exit_status(strict=False) == 0
    assert summary.exit_status(strict=True) == 1


def test_a_partial_audit_says_it_is_incomplete() -> None:
    # GIVEN one package audited and one skipped
    summary = summarise(_report(AUDITED, SKIPPED))

    # THEN the headline says so, and is no "No known vulnerabilities"
    headline = summary.headline("src/requirements.txt")
    assert "2 package(s) resolved from src/requirements.txt, 1 audited, 1 NOT audited" in headline
    assert "the audit is incomplete" in headline
    assert "no known vulnerabilities" not in headline.lower()


def test_a_complete_clean_audit_says_no_known_vulnerabilities() -> None:
    # GIVEN every package audited, none vulnerable
    summary = summarise(_report(AUDITED, {**AUDITED, "name": "six", "version": "1.17.0"}))

    # THEN (and only then) the headline says there are no known vulnerabilities
    assert summary.headline("x.txt") == (
        "pip-audit: 2 package(s) resolved from x.txt, 2 audited: no known vulnerabilities"
    )
    assert summary.exit_status(strict=True) == 0


@pytest.mark.parametrize("strict", [False, True])
def test_a_known_vulnerability_fails_with_its_id_and_fix(strict: bool) -> None:
    # GIVEN a vulnerable package among audited and skipped ones
    summary = summarise(_report(AUDITED, VULNERABLE, SKIPPED))

    # THEN the audit fails, strict or not, naming the vulnerability and the release that fixes it
    assert summary.exit_status(strict=strict) == 1
    assert "1 known vulnerability in 1 package(s)" in summary.headline("x.txt")
    assert summary.vulnerable == {"jinja2 3.1.2": ["GHSA-h5c8-rqwp-cp95 (fixed in 3.1.3)"]}


@pytest.mark.timeout(660)
def test_make_securitys_audit_reports_what_it_audited() -> None:
    # GIVEN the runtime requirements, WHEN the audit runs as `make security` runs it (real pip-audit:
    # it resolves the requirements with pip, then asks its vulnerability service, reachable or not)
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "audit.py"), "--requirement", str(DEFAULT_REQUIREMENTS)],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO_ROOT,
        timeout=600,
    )

    # THEN it ends as pip-audit's findings say, under one headline whose counts add up
    assert completed.returncode in (0, 1), completed.stdout + completed.stderr
    headline, *details = completed.stdout.splitlines()
    assert headline.startswith("pip-audit: "), completed.stdout
    resolved = int(headline.split(" package(s) resolved")[0].removeprefix("pip-audit: "))
    audited = int(headline.split(", ")[1].removesuffix(" audited").split(":")[0])
    not_audited = (
        int(headline.split(" NOT audited")[0].rsplit(", ", 1)[1]) if "NOT audited" in headline else 0
    )
    assert resolved == audited + not_audited
    assert resolved > len(DEFAULT_REQUIREMENTS.read_text().split("==")) - 1  # transitive requirements too
    # and pip-audit's own "No known vulnerabilities found" (printed even when it skipped everything)
    # is not what the reader sees; "no known vulnerabilities" only when every package was audited
    assert "No known vulnerabilities found" not in completed.stdout + completed.stderr
    assert ("no known vulnerabilities" in headline) == (not_audited == 0 and completed.returncode == 0)
    assert sum(line.startswith("    ") for line in details) == not_audited
