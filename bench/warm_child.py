"""One warm Lambda container of a given source tree, in its own process: ``python -m bench.warm_child``.

``bench.child`` measures a fresh interpreter once; this one stays up and is invoked again and again,
so that two versions of the function (the source tree of an older commit, unpacked by
``bench.before``, and this one's ``src``) can be timed warm in the same run, round-robin, without
their modules meeting in one interpreter. The function's environment is the parent's.

Which version runs is chosen on purpose, per child, by its parent: :class:`WarmChild` starts the
child with ``PYTHONPATH=<src>``, so that tree's ``handler`` and ``thread_updater`` come first on the
child's path, ahead of the ones ``make venv`` installed (this checkout's ``src/``), while ``bench`` and
``devstack`` still come from the installed project. No ``sys.path`` edit in either process; the child
checks that ``handler`` really was imported from ``--src`` and stops if not.

Protocol, one JSON document per line: the parent writes ``{"event": path}`` (optionally ``"fresh":
true``: a new runtime first, as a container meeting the upstream for the first time; ``"state_table":
false``: without the state table, a new runtime too; and ``"timeout_s"``) and reads ``{"wall_s",
"records", "handed_back"}``; ``{"quit": true}`` or end of input stops the child. The handler's logs and
metrics go to /dev/null. :class:`WarmChild` starts and always stops it.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from bench.latency_server import wait_or_kill
from devstack.artifact import ISOLATION_FLAGS

ROOT = Path(__file__).resolve().parent.parent


def serve(src: Path, commands: IO[str], answers: IO[str]) -> None:
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        import handler
        from devstack.lambda_events import LocalContext
        from thread_updater import app

        for module in (handler, app):
            if not Path(module.__file__ or "").resolve().is_relative_to(src.resolve()):
                raise SystemExit(f"{module.__name__} is {module.__file__}, not from {src}: PYTHONPATH={src}?")
        lambda_handler = handler.lambda_handler
        table = os.environ.get("THREAD_STATE_TABLE", "")
        for line in commands:
            command = json.loads(line)
            if command.get("quit"):
                break
            wanted = table if command.get("state_table", True) else ""
            if command.get("fresh") or wanted != os.environ.get("THREAD_STATE_TABLE", ""):
                os.environ["THREAD_STATE_TABLE"] = wanted
                app._build_runtime.cache_clear()
            event = json.loads(Path(command["event"]).read_text())
            started = time.perf_counter()
            response = lambda_handler(event, LocalContext(timeout_s=float(command.get("timeout_s", 60.0))))
            wall_s = time.perf_counter() - started
            failures = response.get("batchItemFailures", []) if isinstance(response, dict) else []
            answer = {"wall_s": wall_s, "records": len(event["Records"]), "handed_back": len(failures)}
            answers.write(json.dumps(answer) + "\n")
            answers.flush()


class WarmChild:
    """``bench.warm_child`` for the source tree ``src``; a context manager that always stops it.

    ``python``: run it on that interpreter, isolated from every site-packages (``-S -B``), so that
    only the stdlib, the repository (for this module) and ``src`` (then a built artifact holding the
    function and its dependencies for that interpreter's version) are importable.
    """

    def __init__(self, src: Path, python: str | None = None) -> None:
        self.src = src
        self.python = python
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> WarmChild:
        # This version of the function first, on purpose; the repository after it (bench, devstack)
        # for an interpreter isolated from the installed project.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(self.src), str(ROOT)])}
        interpreter = [self.python, *ISOLATION_FLAGS] if self.python else [sys.executable]
        self._process = subprocess.Popen(
            [*interpreter, "-m", "bench.warm_child", "--src", str(self.src)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        return self

    def invoke(
        self, event: Path, *, fresh: bool = False, state_table: bool = True, timeout_s: float = 60.0
    ) -> dict[str, Any]:
        process = self._process
        if process is None or process.stdin is None or process.stdout is None:
            raise RuntimeError("the warm child is not running")
        process.stdin.write(
            json.dumps(
                {"event": str(event), "fresh": fresh, "state_table": state_table, "timeout_s": timeout_s}
            )
            + "\n"
        )
        process.stdin.flush()
        line = process.stdout.readline()  # the invocation is bounded by its own timeout_s
        if not line:
            raise RuntimeError(f"bench.warm_child ({self.src}) exited ({process.poll()})")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        with contextlib.suppress(OSError):
            if process.stdin is not None:
                process.stdin.close()  # end of input: the child stops
        wait_or_kill(process)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.warm_child")
    parser.add_argument(
        "--src", type=Path, required=True, help="the source tree: handler.py, thread_updater/"
    )
    args = parser.parse_args(argv)
    serve(args.src, sys.stdin, sys.stdout)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
