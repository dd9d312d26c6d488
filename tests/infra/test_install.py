"""The project is installed into ``.venv`` (``make venv``: pyproject.toml, editable), not patched onto
``sys.path``: the function and the tools import, and ``python -m`` runs, from any working directory.

The subprocesses run this interpreter (the venv's, as ``make`` runs it) in a temporary directory with no
``PYTHONPATH``: nothing but the install can make the repository's modules importable there.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SRC = REPO_ROOT / "src"
PROJECT_DIRS = ("src", "ops", "devstack", "bench", "tools", "tests")
INSTALLED = {
    "handler": SRC / "handler.py",
    "thread_updater": SRC / "thread_updater" / "__init__.py",
    "ops": REPO_ROOT / "ops" / "__init__.py",
    "devstack": REPO_ROOT / "devstack" / "__init__.py",
    "bench": REPO_ROOT / "bench" / "__init__.py",
    "tools": REPO_ROOT / "tools" / "__init__.py",
}
# What the Makefile runs (run, invoke, up, down, dlq, bench, package) and the soak the docs quote.
MODULES = [
    "ops.dlq",
    "devstack.run",
    "devstack.invoke",
    "devstack.up",
    "bench.run",
    "bench.soak",
    "tools.package",
]
RUN_TIMEOUT_S = 60.0
_MUTATORS = {"insert", "append", "extend", "remove", "pop", "clear"}


def project_files() -> Iterator[Path]:
    for top in PROJECT_DIRS:
        for path in sorted((REPO_ROOT / top).rglob("*.py")):
            if "node_modules" not in path.parts:
                yield path


def is_sys_path(node: ast.expr) -> bool:
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "path"
        and isinstance(node.value, ast.Name)
        and node.value.id == "sys"
    )


def sys_path_edits(source: str) -> list[int]:
    """Lines that change the import path: ``sys.path.<mutator>(…)``, ``sys.path = …``, ``sys.path[…] =``,
    ``sys.path += …`` and ``site.addsitedir(…)``."""
    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            if (node.func.attr in _MUTATORS and is_sys_path(owner)) or (
                node.func.attr == "addsitedir" and isinstance(owner, ast.Name) and owner.id == "site"
            ):
                lines.append(node.lineno)
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        for target in targets:
            if is_sys_path(target) or (isinstance(target, ast.Subscript) and is_sys_path(target.value)):
                lines.append(target.lineno)
    return sorted(lines)


def run_outside(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """This interpreter with ``args``, from ``tmp_path`` (not the repository), without PYTHONPATH."""
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    return subprocess.run(
        [sys.executable, *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


def test_the_detector_sees_every_form_of_sys_path_edit() -> None:
    # GIVEN each way a module could put a directory on the import path, and two that only read it
    source = "\n".join(
        [
            "import site, sys",
            "sys.path.insert(0, 'src')",
            "sys.path.append('src')",
            "sys.path = ['src', *sys.path]",
            "sys.path[:0] = ['src']",
            "sys.path += ['src']",
            "site.addsitedir('src')",
            "print(sys.path)",
            "found = 'src' in sys.path",
        ]
    )
    # WHEN the detector reads it, THEN it reports the six edits and neither read
    assert sys_path_edits(source) == [2, 3, 4, 5, 6, 7]


def test_no_project_file_edits_sys_path() -> None:
    # GIVEN every Python file of the project (the function, the tools, the benchmarks, the tests)
    # WHEN each is searched for an import-path edit
    edits = {
        f"{path.relative_to(REPO_ROOT)}:{line}"
        for path in project_files()
        for line in sys_path_edits(path.read_text())
    }
    # THEN there is none: the install makes them importable (bench.warm_child picks an older version
    # of the function with PYTHONPATH, set by its parent for the child process)
    assert not edits, sorted(edits)


def test_the_function_and_the_tool_packages_import_from_anywhere(tmp_path: Path) -> None:
    # GIVEN the venv's interpreter in a directory outside the repository, without PYTHONPATH
    probe = (
        "import importlib.util, json; "
        f"print(json.dumps({{name: getattr(importlib.util.find_spec(name), 'origin', None) "
        f"for name in {[*INSTALLED, 'tests']!r}}}))"
    )
    # WHEN it looks for the function's modules, the tool packages and the tests
    completed = run_outside(tmp_path, "-c", probe)
    # THEN each of the six comes from this checkout, and nothing else of the repository is importable
    assert completed.returncode == 0, completed.stderr
    origins = json.loads(completed.stdout)
    expected = {name: str(path) for name, path in INSTALLED.items()}
    assert {name: origins[name] for name in INSTALLED} == expected
    assert origins["tests"] is None


@pytest.mark.parametrize("module", MODULES)
def test_python_m_runs_from_outside_the_repository(tmp_path: Path, module: str) -> None:
    # GIVEN the venv's interpreter in a directory outside the repository, without PYTHONPATH
    # WHEN `python -m <module> --help` runs
    completed = run_outside(tmp_path, "-m", module, "--help")
    # THEN the module is found, imports everything it needs and prints its usage
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.startswith("usage: ")


def test_the_install_leaves_src_as_it_ships() -> None:
    # GIVEN the project installed by `make venv` (its build metadata goes to build/, setup.cfg)
    # WHEN src/ is listed (`sam build` ships it whole; tools/package.py copies what is in it)
    metadata = sorted(entry.name for entry in SRC.iterdir() if entry.suffix in {".egg-info", ".dist-info"})
    # THEN no build metadata is among what ships
    assert metadata == []
