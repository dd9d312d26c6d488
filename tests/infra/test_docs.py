"""The README and docs/ stay honest: links, anchors, make targets, modules and paths they quote exist.

Read from the files only (no sockets, no subprocesses): a broken link, a renamed test folder or a
removed Makefile target fails here instead of on a reader's fresh clone.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
README = REPO_ROOT / "README.md"
PAGES = [README, *sorted((REPO_ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 160

FENCED_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`([^`\n]+)`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
MAKE_TARGET = re.compile(r"\bmake\s+([A-Za-z][\w-]*)(?![\w=-])")
PYTHON_MODULE = re.compile(r"\bpython\S*\s+-m\s+([A-Za-z_][\w.]*)")
# A quoted path into one of the repository's folders; bench/out/ and build/ are written by runs.
REPO_PATH = re.compile(r"(?<![\w./-])((?:src|tests|events|devstack|bench|tools|ops|docs|\.ci)/[\w./-]*)")
GENERATED_PREFIXES = ("bench/out/",)
MODULE_ROOTS = [REPO_ROOT, REPO_ROOT / "src"]


def page_id(page: Path) -> str:
    return str(page.relative_to(REPO_ROOT))


def code_text(markdown: str) -> list[str]:
    """Fenced blocks and inline code spans: where commands and paths are quoted."""
    blocks = FENCED_BLOCK.findall(markdown)
    prose = FENCED_BLOCK.sub("", markdown)
    return blocks + INLINE_CODE.findall(prose)


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lower case, punctuation gone, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading's slug, with GitHub's -1, -2 suffixes for repeats."""
    seen: dict[str, int] = {}
    slugs = set()
    for heading in HEADING.findall(FENCED_BLOCK.sub("", page.read_text())):
        slug = github_slug(heading)
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        slugs.add(slug if count == 0 else f"{slug}-{count}")
    return slugs


def relative_links(page: Path) -> list[str]:
    prose = FENCED_BLOCK.sub("", page.read_text())
    prose = INLINE_CODE.sub("", prose)
    return [link for link in LINK.findall(prose) if not re.match(r"[a-z][\w+.-]*:", link)]


def makefile_targets() -> set[str]:
    makefile = (REPO_ROOT / "Makefile").read_text()
    return set(re.findall(r"^([A-Za-z][\w-]*)\s*:(?!=)", makefile, re.MULTILINE))


def module_exists(module: str) -> bool:
    """A module of this repository (a .py file, or a package with __main__.py), else an installed one."""
    relative = Path(*module.split("."))
    for root in MODULE_ROOTS:
        if (root / relative).with_suffix(".py").is_file() or (root / relative / "__main__.py").is_file():
            return True
    top_level = module.split(".")[0]
    in_repo = any((root / top_level).exists() or (root / f"{top_level}.py").exists() for root in MODULE_ROOTS)
    return not in_repo and importlib.util.find_spec(module) is not None


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_relative_links_and_anchors_resolve(page: Path) -> None:
    broken = []
    for link in relative_links(page):
        path_part, _, anchor = link.partition("#")
        target = (page.parent / path_part).resolve() if path_part else page
        if not target.exists():
            broken.append(f"{link}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{link}: no heading #{anchor} in {target.relative_to(REPO_ROOT)}")
    assert broken == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_make_targets_exist(page: Path) -> None:
    mentioned = {target for code in code_text(page.read_text()) for target in MAKE_TARGET.findall(code)}
    assert mentioned - makefile_targets() == set()


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_modules_exist(page: Path) -> None:
    mentioned = {module for code in code_text(page.read_text()) for module in PYTHON_MODULE.findall(code)}
    assert sorted(module for module in mentioned if not module_exists(module)) == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_quoted_repository_paths_exist(page: Path) -> None:
    quoted = {path.rstrip(".") for code in code_text(page.read_text()) for path in REPO_PATH.findall(code)}
    checked = [path for path in sorted(quoted) if not path.startswith(GENERATED_PREFIXES)]
    missing = [path for path in checked if not (REPO_ROOT / path).exists()]
    assert missing == []


def test_readme_is_a_front_page() -> None:
    line_count = len(README.read_text().splitlines())
    assert line_count <= README_MAX_LINES, "the README is a front page: move the depth to docs/"


def test_the_checks_see_what_they_check() -> None:
    """Guard against a regex that silently matches nothing: the README quotes all four kinds."""
    readme = README.read_text()
    codes = code_text(readme)
    assert relative_links(README)
    assert any(MAKE_TARGET.search(code) for code in codes)
    assert any(REPO_PATH.search(code) for code in codes)
    assert "alarms-and-what-to-do" in anchors(REPO_ROOT / "docs" / "operations.md")
    assert github_slug("`sam local invoke` (needs Docker)") == "sam-local-invoke-needs-docker"
