"""The command-line tools take options only as spelt: argparse's prefix matching is off everywhere.

With it on, ``make run ARGS="--thread 5"`` silently meant ``--threads 5``, and a later option sharing
the prefix would change what an old command line does.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from devstack import run
from ops.dlq import cli as dlq_cli

ROOT = Path(__file__).resolve().parents[2]
TOOL_DIRECTORIES = ("ops", "devstack", "bench", "tools", "src")


def _parser_calls() -> list[tuple[str, ast.Call]]:
    found: list[tuple[str, ast.Call]] = []
    for directory in TOOL_DIRECTORIES:
        for path in sorted((ROOT / directory).rglob("*.py")):
            if "node_modules" in path.parts:
                continue
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
                    continue
                if node.func.attr in {"ArgumentParser", "add_parser"}:
                    found.append((f"{path.relative_to(ROOT)}:{node.lineno}", node))
    return found


def test_every_parser_and_subcommand_refuses_abbreviations() -> None:
    calls = _parser_calls()
    assert len(calls) >= 12  # the tools' parsers and the DLQ tool's two subcommands
    allowing = [
        where
        for where, call in calls
        if not any(
            keyword.arg == "allow_abbrev"
            and isinstance(keyword.value, ast.Constant)
            and keyword.value.value is False
            for keyword in call.keywords
        )
    ]
    assert allowing == []


@pytest.mark.parametrize(
    ("parse", "argv"),
    [
        (run.parse_args, ["--thread", "5"]),
        (dlq_cli.parse_args, ["inspect", "--dlq-url", "https://sqs.example/1/q", "--js"]),
    ],
)
def test_an_abbreviated_option_is_a_usage_error(
    parse: Callable[[list[str]], object], argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse(argv)
    assert exited.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err
