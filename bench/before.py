"""The function before coalescing, for the benchmark's before/after: the real old code, not a model.

Commit ``4b015b4`` (main before coalescing: one claim, one Modify request and one record per update)
is unpacked with ``git archive`` into ``build/bench-before/`` and run by ``bench.warm_child`` like
this tree's ``src``. Without that commit (a shallow clone, no git, an exported tarball) the "before"
half is skipped with the reason, never faked.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BEFORE_COMMIT = "4b015b4"
BEFORE_DIR = ROOT / "build" / "bench-before"


def unpack(commit: str = BEFORE_COMMIT, target: Path = BEFORE_DIR) -> tuple[Path | None, str]:
    """``(src directory, "")`` with the commit's ``src`` unpacked, or ``(None, why not)``."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", commit, "src"],
            cwd=ROOT,
            capture_output=True,
            check=False,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        return None, f"git archive {commit} could not run ({type(error).__name__})"
    if archive.returncode != 0:
        reason = archive.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        return None, f"commit {commit} is not in this clone (shallow?): {reason[0]}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target / "src", ""
