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


# --------------------------------------------------------------------------- tables and structure

TABLE_DELIMITER = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?\s*$")
# A heading that lost its line break: prose, then "## Title" on the same line.
INLINE_HEADING = re.compile(r"\S\s+#{2,6}\s+[A-Z`*]")
SHORTEST_REPEATABLE_ROW = 40


def table_cells(line: str) -> list[str]:
    """A table row's cells as GitHub splits them: on every '|' not escaped (code spans included)."""
    body = line.strip()
    body = body[1:] if body.startswith("|") else body
    body = body[:-1] if body.endswith("|") and not body.endswith("\\|") else body
    return [cell.strip() for cell in re.split(r"(?<!\\)\|", body)]


def tables(page: Path) -> list[tuple[int, list[str]]]:
    """Every table outside fenced blocks: (line number of its header, its lines)."""
    lines = page.read_text().splitlines()
    found: list[tuple[int, list[str]]] = []
    in_fence = False
    index = 0
    while index < len(lines):
        line = lines[index]
        if line.startswith("```"):
            in_fence = not in_fence
        elif (
            not in_fence
            and line.startswith("|")
            and index + 1 < len(lines)
            and TABLE_DELIMITER.match(lines[index + 1])
        ):
            end = index + 2
            while end < len(lines) and lines[end].startswith("|"):
                end += 1
            found.append((index + 1, lines[index:end]))
            index = end
            continue
        index += 1
    return found


def prose_lines(page: Path) -> list[tuple[int, str]]:
    """Lines outside fenced blocks, numbered from 1."""
    numbered: list[tuple[int, str]] = []
    in_fence = False
    for number, line in enumerate(page.read_text().splitlines(), start=1):
        if line.startswith("```"):
            in_fence = not in_fence
        elif not in_fence:
            numbered.append((number, line))
    return numbered


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_table_row_has_as_many_cells_as_its_header(page: Path) -> None:
    malformed = []
    for start, lines in tables(page):
        width = len(table_cells(lines[0]))
        for offset, line in enumerate(lines):
            if len(table_cells(line)) != width:
                malformed.append(f"line {start + offset}: {len(table_cells(line))} cells, header has {width}")
    assert malformed == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_table_names_a_row_twice(page: Path) -> None:
    """The first cell names the row (a parameter, a variable, a mode); measurement rows, keyed by
    several columns and starting with a number, are left out."""
    repeated = []
    for start, lines in tables(page):
        seen: set[str] = set()
        for offset, line in enumerate(lines[2:], start=2):
            key = table_cells(line)[0]
            if key[:1].isdigit():
                continue
            if key and key in seen:
                repeated.append(f"line {start + offset}: {key} again")
            seen.add(key)
    assert repeated == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_no_table_or_heading_is_collapsed_into_a_paragraph(page: Path) -> None:
    """A table row or heading glued to prose renders as one paragraph of pipes and hashes: a row's end
    and the next row's start ("| |") or a heading after text on one line."""
    collapsed = [
        f"line {number}: {line[:60]}"
        for number, line in prose_lines(page)
        if INLINE_HEADING.search(INLINE_CODE.sub("", line)) or (not line.startswith("|") and "| |" in line)
    ]
    assert collapsed == []


def test_no_table_row_is_repeated_across_the_docs() -> None:
    """A row copied into a second page (or twice into one) drifts: state a thing once and link to it."""
    where: dict[str, list[str]] = {}
    for page in PAGES:
        for start, lines in tables(page):
            for offset, line in enumerate(lines[2:], start=2):
                if len(line) >= SHORTEST_REPEATABLE_ROW:
                    where.setdefault(line.strip(), []).append(f"{page_id(page)}:{start + offset}")
    assert {row[:60]: places for row, places in where.items() if len(places) > 1} == {}


def test_the_table_checks_see_what_they_check(tmp_path: Path) -> None:
    """Guard the table checks against matching nothing: a table is found, a collapsed one is caught."""
    deploy = REPO_ROOT / "docs" / "deploy.md"
    assert any(table_cells(lines[0])[0] == "parameter" for _, lines in tables(deploy))
    broken = tmp_path / "broken.md"
    broken.write_text(
        "| a | b |\n|---|---|\n| 1 | 2 | 3 |\n| 1 | 4 |\n\ntext | x | | y | z ## About it\n"
        "| code | `a \\| b` |\n"
    )
    [(_, lines)] = tables(broken)
    assert [len(table_cells(line)) for line in lines] == [2, 2, 3, 2]
    assert [table_cells(line)[0] for line in lines[2:]] == ["1", "1"]
    assert INLINE_HEADING.search(prose_lines(broken)[-2][1])
    assert "| |" in prose_lines(broken)[-2][1]
    assert table_cells("| code | `a \\| b` |") == ["code", "`a \\| b`"]
