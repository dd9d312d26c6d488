#!/usr/bin/env python3
"""Known-vulnerability audit of the runtime requirements, with a headline that says what was audited.

pip-audit resolves ``src/requirements.txt`` (every transitive requirement, at the versions pip picks)
and looks each package up in its vulnerability service. A package it cannot look up (no route to the
service, or an index that does not serve PyPI's per-release data) is *skipped*, and pip-audit then
still prints "No known vulnerabilities found" above a table of skipped packages. This wrapper runs it
with ``--format json`` and prints its own headline instead: how many packages were resolved, how many
were audited, how many were not, and the vulnerabilities found.

Exit status: 1 for a known vulnerability; 1 for a package not audited with ``--strict`` (or
``AUDIT_STRICT=1``), else 0; 2 when pip-audit itself fails.

Usage::

    .venv/bin/python tools/audit.py [--requirement src/requirements.txt] [--strict]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_REQUIREMENTS = REPO_ROOT / "src" / "requirements.txt"
AUDIT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Summary:
    """What one pip-audit report says, package by package."""

    audited: list[str]
    skipped: dict[str, str]  # package -> skip reason
    vulnerable: dict[str, list[str]]  # "package version" -> vulnerability ids (with the fix versions)

    def headline(self, source: str) -> str:
        total = len(self.audited) + len(self.skipped)
        counts = f"{total} package(s) resolved from {source}, {len(self.audited)} audited"
        if self.skipped:
            counts += f", {len(self.skipped)} NOT audited"
        if self.vulnerable:
            found = sum(len(ids) for ids in self.vulnerable.values())
            noun = "vulnerability" if found == 1 else "vulnerabilities"
            verdict = f"{found} known {noun} in {len(self.vulnerable)} package(s)"
        elif not self.audited:
            verdict = "nothing was audited, so this is no clean result"
        elif self.skipped:
            verdict = "no known vulnerability in those audited; the audit is incomplete"
        else:
            verdict = "no known vulnerabilities"
        return f"pip-audit: {counts}: {verdict}"

    def exit_status(self, strict: bool) -> int:
        return 1 if self.vulnerable or (strict and self.skipped) else 0


def summarise(report: dict[str, Any]) -> Summary:
    """Read pip-audit's JSON report.

    ``{"dependencies": [...]}``, each ``{"name", "version", "vulns": [{"id", "fix_versions"}]}`` when
    audited or ``{"name", "skip_reason"}`` when not.
    """
    audited: list[str] = []
    skipped: dict[str, str] = {}
    vulnerable: dict[str, list[str]] = {}
    for dependency in report.get("dependencies", []):
        name = str(dependency.get("name", "?"))
        if "skip_reason" in dependency:
            skipped[name] = str(dependency["skip_reason"])
            continue
        audited.append(name)
        vulns = dependency.get("vulns") or []
        if vulns:
            key = f"{name} {dependency.get('version', '?')}"
            vulnerable[key] = [
                f"{v.get('id', '?')} (fixed in {', '.join(v.get('fix_versions') or []) or 'no release yet'})"
                for v in vulns
            ]
    return Summary(audited=audited, skipped=skipped, vulnerable=vulnerable)


def report_lines(summary: Summary, source: str, strict: bool) -> list[str]:
    lines = [summary.headline(source)]
    for package, ids in sorted(summary.vulnerable.items()):
        lines.append(f"  VULNERABLE {package}: {'; '.join(ids)}")
    if summary.skipped:
        lines.append("  not audited (pip-audit could not look them up):")
        lines.extend(f"    {name}: {reason}" for name, reason in sorted(summary.skipped.items()))
        if not strict:
            lines.append("  (not a failure; AUDIT_STRICT=1 makes it one)")
    return lines


def run_pip_audit(requirements: Path) -> dict[str, Any]:
    """pip-audit's JSON report for ``requirements``; RuntimeError when pip-audit itself fails."""
    pip_audit = Path(sys.executable).with_name("pip-audit")
    command = [str(pip_audit)] if pip_audit.exists() else [sys.executable, "-m", "pip_audit"]
    with tempfile.TemporaryDirectory(prefix="audit-") as tmp:
        output = Path(tmp) / "report.json"
        completed = subprocess.run(  # noqa: S603 - fixed command line, our own requirements file
            [
                *command,
                "--requirement",
                str(requirements),
                "--progress-spinner",
                "off",
                "--format",
                "json",
                "--output",
                str(output),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=AUDIT_TIMEOUT_S,
        )
        # 0: nothing found, 1: vulnerabilities found; both write the report. Anything else is a failure.
        if completed.returncode not in (0, 1) or not output.is_file():
            detail = (completed.stderr or completed.stdout).strip().splitlines()[-5:]
            raise RuntimeError(f"pip-audit failed (exit {completed.returncode}): {' | '.join(detail)}")
        report: dict[str, Any] = json.loads(output.read_text())
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__.splitlines()[0] if __doc__ else None
    )
    parser.add_argument("--requirement", type=Path, default=DEFAULT_REQUIREMENTS, help="requirements file")
    parser.add_argument(
        "--strict", action="store_true", help="fail when a package is not audited (also AUDIT_STRICT=1)"
    )
    args = parser.parse_args(argv)
    requirements: Path = args.requirement
    strict = bool(args.strict or os.environ.get("AUDIT_STRICT"))
    try:
        report = run_pip_audit(requirements)
    except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as exc:
        print(f"pip-audit: {exc}", file=sys.stderr)
        return 2
    summary = summarise(report)
    try:
        source = str(requirements.resolve().relative_to(REPO_ROOT))
    except ValueError:
        source = str(requirements)
    print("\n".join(report_lines(summary, source, strict)))
    return summary.exit_status(strict)


if __name__ == "__main__":
    sys.exit(main())
