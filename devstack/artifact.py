"""Build the function the way it ships (what ``sam build`` puts in the zip) and AWS's runtime client.

``build_artifact(target)`` produces one directory holding ``src/requirements.txt`` installed with
``pip install -t`` plus the contents of ``src/`` (``handler.py``, ``thread_updater/``), without
``requirements.txt`` or bytecode caches: the layout Lambda unpacks into ``/var/task``.

``runtime_interface_client()`` installs ``awslambdaric`` (the version pinned in
``requirements-dev.txt``) into a directory of its own: on Lambda the runtime interface client is
part of the runtime, not of the artifact, so it must not be vendored into it.

``pip install`` runs once per distinct input (requirements text, interpreter, platform): the result
is cached under ``build/`` (git-ignored, removed by ``make clean``) and published with one atomic
rename, so a half-finished install is never reused and concurrent builders do not collide. Each
``build_artifact`` call then hard-links the cached packages into the target (copying when links
are not possible) and copies ``src/`` fresh, so the artifact always reflects the working tree.

``LambdaPlatform`` builds for the Lambda runtime instead of this interpreter: pip fetches CPython
``LAMBDA_PYTHON`` (3.13) ``manylinux2014`` wheels for x86_64 or arm64 (``--only-binary=:all:``),
whatever Python and machine run the build, so compiled dependencies (pydantic-core) load on the
``python3.13`` runtime. Such an artifact can only be imported here for its pure-Python parts.

``isolated_argv`` is the interpreter command line that sees only the stdlib plus ``PYTHONPATH``:
``-S`` skips ``site`` (so no virtualenv, user or system site-packages) and ``-B`` writes no
bytecode (``/var/task`` is read-only on Lambda).

Standard library only. ``python -m devstack.artifact TARGET`` builds an artifact from the command line.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "BUILD_DIR",
    "ISOLATION_FLAGS",
    "LAMBDA_ARCHITECTURES",
    "LAMBDA_PYTHON",
    "REQUIREMENTS",
    "SRC",
    "LambdaPlatform",
    "build_artifact",
    "dependencies",
    "isolated_argv",
    "main",
    "ric_version",
    "runtime_interface_client",
]

ROOT = Path(__file__).resolve().parent.parent
SRC = ROOT / "src"
REQUIREMENTS = SRC / "requirements.txt"
DEV_REQUIREMENTS = ROOT / "requirements-dev.txt"
BUILD_DIR = ROOT / "build"

ISOLATION_FLAGS = ("-S", "-B")
"""No ``site`` (only the stdlib and ``PYTHONPATH`` are importable), no bytecode writes."""

PIP_TIMEOUT_S = 900.0
_PACKAGES = "packages"
_MARKER = "complete.json"
_SRC_EXCLUDED = ("requirements.txt", "__pycache__", "*.pyc")


LAMBDA_ARCHITECTURES = {"x86_64": "x86_64", "arm64": "aarch64"}
"""Lambda architecture name -> the machine name in wheel platform tags and ``uname -m``."""

LAMBDA_PYTHON = "3.13"
"""The CPython of template.yaml's ``Runtime: python3.13``, which ``make package`` builds for."""


@dataclass(frozen=True)
class LambdaPlatform:
    """The Lambda runtime an artifact is built for: CPython version and architecture.

    Defaults match template.yaml (``Runtime: python3.13``, ``Architectures: [x86_64]``).
    """

    architecture: str = "x86_64"
    python_version: str = LAMBDA_PYTHON

    def __post_init__(self) -> None:
        if self.architecture not in LAMBDA_ARCHITECTURES:
            known = sorted(LAMBDA_ARCHITECTURES)
            raise ValueError(f"architecture must be one of {known}, not {self.architecture!r}")
        if not re.fullmatch(r"3\.\d+", self.python_version):
            raise ValueError(f"python_version must look like 3.13, not {self.python_version!r}")

    @property
    def machine(self) -> str:
        """``x86_64`` or ``aarch64``: the name wheel tags and ELF headers use."""
        return LAMBDA_ARCHITECTURES[self.architecture]

    @property
    def abi_tag(self) -> str:
        """``cp313``: the CPython tag of compiled modules built for this runtime."""
        return "cp" + self.python_version.replace(".", "")

    def pip_args(self) -> list[str]:
        """Only wheels, for this runtime's Python and manylinux2014 on its architecture.

        No bytecode: pip would compile it with this interpreter, which the runtime's Python ignores.
        """
        return [
            "--no-compile",
            "--platform",
            f"manylinux2014_{self.machine}",
            "--python-version",
            self.python_version,
            "--implementation",
            "cp",
            "--only-binary=:all:",
        ]


def isolated_argv(*args: str) -> list[str]:
    """This interpreter, isolated from every site-packages directory, running ``args``."""
    return [sys.executable, *ISOLATION_FLAGS, *args]


def _interpreter_tag() -> str:
    """What makes installed wheels reusable: implementation, version, platform, machine, libc."""
    libc = "-".join(platform.libc_ver()) if sys.platform.startswith("linux") else ""
    return "-".join(
        [
            sys.implementation.name,
            f"{sys.version_info.major}.{sys.version_info.minor}",
            sys.platform,
            platform.machine(),
            libc,
        ]
    )


def _pip_install(target: Path, pip_args: Sequence[str]) -> None:
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-input",
        "--target",
        str(target),
        *pip_args,
    ]
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except subprocess.CalledProcessError as error:
        raise RuntimeError(
            f"{' '.join(command)} failed with exit status {error.returncode}:\n{error.stdout}{error.stderr}"
        ) from error


def _cached_install(name: str, pip_args: Sequence[str], key_material: bytes) -> Path:
    """``pip install -t`` into ``build/<name>-<hash>/packages`` once; later calls reuse it.

    The install happens in a private temporary directory next to the cache entry, which is renamed
    into place (atomically) together with its ``complete.json`` marker only after pip succeeded.
    """
    digest = hashlib.sha256()
    for part in (key_material, _interpreter_tag().encode(), "\0".join(pip_args).encode()):
        digest.update(part)
        digest.update(b"\0")
    entry = BUILD_DIR / f"{name}-{digest.hexdigest()[:16]}"
    packages = entry / _PACKAGES
    if (entry / _MARKER).is_file() and packages.is_dir():
        return packages
    if entry.exists():  # not published by us (renames are atomic): a leftover, rebuild it
        shutil.rmtree(entry)

    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", suffix=".partial", dir=BUILD_DIR))
    try:
        _pip_install(staging / _PACKAGES, pip_args)
        marker = {"pip_args": list(pip_args), "interpreter": _interpreter_tag(), "python": sys.version}
        (staging / _MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        try:
            staging.rename(entry)
        except OSError:
            # Someone else published the same entry first; theirs is just as good.
            if not (entry / _MARKER).is_file():
                raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return packages


def dependencies(lambda_platform: LambdaPlatform | None = None) -> Path:
    """The function's runtime dependencies (``src/requirements.txt``), installed once and cached.

    For this interpreter, or with ``lambda_platform`` for that Lambda runtime (wheels only).
    """
    pip_args = ["-r", str(REQUIREMENTS), *(lambda_platform.pip_args() if lambda_platform else [])]
    return _cached_install("artifact-deps", pip_args, REQUIREMENTS.read_bytes())


def ric_version() -> str:
    """The ``awslambdaric`` version pinned in ``requirements-dev.txt``."""
    found = re.search(r"^awslambdaric==([\w.+-]+)\s*$", DEV_REQUIREMENTS.read_text(), re.MULTILINE)
    if found is None:
        raise RuntimeError(f"no awslambdaric==VERSION pin in {DEV_REQUIREMENTS}")
    return found.group(1)


def runtime_interface_client(version: str | None = None) -> Path:
    """A directory holding only ``awslambdaric`` and its dependencies (installed once and cached)."""
    version = version or ric_version()
    requirement = f"awslambdaric=={version}"
    return _cached_install(f"ric-{version}", [requirement], requirement.encode())


def _link_or_copy(source: str, destination: str) -> str:
    """Hard-link a file (cheap, same inode; Python replaces files rather than editing them)."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)
    return destination


def _omitted(name: str, omit: Collection[str]) -> bool:
    """Whether a top-level entry of the dependencies belongs to a distribution left out on purpose."""
    if name in omit:
        return True
    if name.endswith(".dist-info"):
        distribution = name.removesuffix(".dist-info").rsplit("-", 1)[0]
        return re.sub(r"[-_.]+", "_", distribution).lower() in {
            re.sub(r"[-_.]+", "_", item).lower() for item in omit
        }
    return False


def build_artifact(
    target: Path,
    *,
    omit: Collection[str] = (),
    lambda_platform: LambdaPlatform | None = None,
    src: Path = SRC,
) -> Path:
    """Lay out the deployable function in ``target`` (which must not exist or be empty).

    The dependencies are built for this interpreter, or with ``lambda_platform`` for that Lambda runtime.
    ``src`` is the function's code (another version of it, for a benchmark's before/after).

    ``omit`` names top-level packages/modules (and their ``.dist-info``) to leave out of the
    dependencies, to build deliberately broken artifacts in tests. Dependency files are hard links
    into the cache where possible: delete or replace them, never edit them in place.
    """
    target = Path(target)
    if target.exists() and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty")
    target.mkdir(parents=True, exist_ok=True)

    deps = dependencies(lambda_platform)
    for entry in sorted(deps.iterdir()):
        if _omitted(entry.name, omit):
            continue
        destination = target / entry.name
        if entry.is_dir():
            shutil.copytree(entry, destination, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(destination))

    ignore = shutil.ignore_patterns(*_SRC_EXCLUDED)
    excluded = set(ignore(str(src), [entry.name for entry in src.iterdir()]))
    for entry in sorted(src.iterdir()):
        if entry.name in excluded:
            continue
        destination = target / entry.name
        if destination.exists():
            raise FileExistsError(f"src/{entry.name} collides with a dependency of the same name")
        if entry.is_dir():
            shutil.copytree(entry, destination, ignore=ignore)
        else:
            shutil.copy2(entry, destination)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        allow_abbrev=False, prog="python -m devstack.artifact", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("target", type=Path, help="directory to create (must not exist or be empty)")
    parser.add_argument("--omit", action="append", default=[], help="leave this top-level package out")
    args = parser.parse_args(argv)
    print(build_artifact(args.target, omit=args.omit))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
