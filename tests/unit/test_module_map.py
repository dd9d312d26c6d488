"""The package's module map (``thread_updater/__init__.py``) stays true: every module is in it, once,
and none imports from a row above its own."""

from __future__ import annotations

import re
from pathlib import Path

import thread_updater

PACKAGE = Path(thread_updater.__file__).parent
_ROW = re.compile(r"^``(\w+)``\s", re.MULTILINE)
_IMPORT = re.compile(r"^\s*from thread_updater\.(\w+) import", re.MULTILINE)


def test_the_module_map_lists_every_module_once_and_imports_only_point_down() -> None:
    # GIVEN the map's rows, top-down, and the package's modules
    rows = _ROW.findall(thread_updater.__doc__ or "")
    modules = sorted(path.stem for path in PACKAGE.glob("*.py") if path.stem != "__init__")
    # THEN each module is one row
    assert sorted(rows) == modules
    assert len(rows) == len(set(rows))
    # AND no module imports from a module listed above it
    position = {name: index for index, name in enumerate(rows)}
    upward = {
        name: sorted(
            used
            for used in _IMPORT.findall((PACKAGE / f"{name}.py").read_text())
            if position[used] < position[name]
        )
        for name in rows
    }
    assert {name: used for name, used in upward.items() if used} == {}
