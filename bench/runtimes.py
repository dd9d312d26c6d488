"""Lambda runtimes, or versions of the function, compared: cold start and 100 updates @ 50 ms.

``python -m bench.run --versus-commit COMMIT`` compares the function as it was at ``COMMIT`` (the
baseline: its ``src`` unpacked with ``git archive``) with this tree's, both built as ``make package``
builds them, for this interpreter, and run by it the same way as below: "unchanged within noise"
is a ratio in one run, not two numbers from two days.

``python -m bench.run --runtime-python PYTHON [--runtime-python PYTHON ...]`` (the first is the
baseline): for each interpreter, its ``major.minor`` is read from the interpreter itself and the
function is built for that Lambda runtime as ``make package`` builds it (``devstack.artifact``:
CPython ``3.X`` ``manylinux2014`` wheels only, for this machine's architecture), into
``build/bench-runtimes/python3.X/``. Each interpreter then runs isolated from every site-packages
(``-S -B``): only its stdlib, the repository (for the bench's own child modules) and its artifact.

Measured in one run, round-robin over the runtimes so that machine noise spreads evenly:

* **cold start**: import + first 1-record invocation in a fresh interpreter (``bench.child``);
* **warm**: 100 updates at 50 ms (the headline scenario) in one warm container per runtime
  (``bench.warm_child``), each preceded by an untimed warm-up of 16 updates.

Both against ``bench.latency_server`` (its own process, loopback), the function's secret and DLQ in
moto, no state table (as the grid). Every timed warm run must have every update reach the server.
Reported per runtime: the median and the range (min-max) of each figure, and its ratio to the
baseline's median.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TextIO

from bench.contenders import SECRET, Control, update_bodies
from bench.latency_server import LatencyServerProcess
from bench.report import format_s
from bench.scenarios import CONCURRENCY, HEADLINE
from bench.warm_child import WarmChild
from devstack.artifact import LAMBDA_ARCHITECTURES, SRC, LambdaPlatform, build_artifact
from devstack.lambda_events import sqs_event
from devstack.local_aws import create_resources, function_environment, moto_server

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
ARTIFACTS = ROOT / "build" / "bench-runtimes"
VERSUS = ROOT / "build" / "bench-versus"
ROUNDS = {"quick": 5, "full": 11}  # cold starts and warm runs per runtime


@dataclass
class Runtime:
    """One interpreter, the Lambda runtime it stands for, and its samples."""

    python: str
    label: str  # what the tables call it: "python3.13", or a commit
    version: str  # "3.13"
    full_version: str  # "3.13.0"
    artifact: Path
    cold_start_s: list[float] = field(default_factory=list)
    import_s: list[float] = field(default_factory=list)
    first_invoke_s: list[float] = field(default_factory=list)
    warm_s: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.label

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "artifact": str(self.artifact)}


def interpreter_version(python: str) -> str:
    """``3.13.0``: what ``python`` says it is (it must be CPython)."""
    probe = "import platform, sys; print(platform.python_implementation(), platform.python_version())"
    completed = subprocess.run(
        [python, "-S", "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    implementation, version = completed.stdout.split()
    if implementation != "CPython":
        raise ValueError(f"{python} is {implementation}, not CPython: Lambda's Python runtimes are CPython")
    return version


def lambda_architecture() -> str:
    """This machine's architecture as Lambda names it: the artifact must load here."""
    machine = platform.machine()
    for architecture, wheel_machine in LAMBDA_ARCHITECTURES.items():
        if machine in (architecture, wheel_machine):
            return architecture
    raise RuntimeError(f"no Lambda architecture runs on a {machine} machine")


def prepare(pythons: Sequence[str], log: TextIO) -> list[Runtime]:
    """Each interpreter with a fresh artifact built for its Python version."""
    runtimes = []
    architecture = lambda_architecture()
    for python in pythons:
        full_version = interpreter_version(python)
        version = ".".join(full_version.split(".")[:2])
        artifact = ARTIFACTS / f"python{version}-{architecture}"
        shutil.rmtree(artifact, ignore_errors=True)
        build_artifact(artifact, lambda_platform=LambdaPlatform(architecture, python_version=version))
        compiled = sorted(path.name for path in artifact.rglob("*.so") if re.search(r"cpython-\d", path.name))
        log.write(f"  python{version} ({python}, {full_version}): {artifact} {compiled}\n")
        runtimes.append(Runtime(python, f"python{version}", version, full_version, artifact))
    if len({runtime.version for runtime in runtimes}) != len(runtimes):
        raise ValueError("give one interpreter per Python version")
    return runtimes


def prepare_versions(commit: str, log: TextIO) -> list[Runtime]:
    """``commit``'s function and this tree's, each built for this interpreter (the commit first)."""
    from bench.before import unpack

    python = sys.executable
    full_version = interpreter_version(python)
    version = ".".join(full_version.split(".")[:2])
    old_src, why_not = unpack(commit, VERSUS / "src" / commit)
    if old_src is None:
        raise RuntimeError(why_not)
    runtimes = []
    for label, src in ((commit, old_src), ("this tree", SRC)):
        artifact = VERSUS / "artifacts" / label.replace(" ", "-")
        shutil.rmtree(artifact, ignore_errors=True)
        build_artifact(artifact, src=src)
        log.write(f"  {label}: {artifact} (python {full_version})\n")
        runtimes.append(Runtime(python, label, version, full_version, artifact))
    return runtimes


def cold_start(runtime: Runtime, tag: str) -> dict[str, Any]:
    from bench.measure import run_child, write_event

    event = write_event(OUT / f"cold-{runtime.name}.json", tag, 1)
    result, _ = run_child("ours", event, python=runtime.python, src=runtime.artifact)
    event.unlink()
    return result


def warm_run(child: WarmChild, control: Control, runtime: Runtime, tag: str, count: int) -> float:
    event = OUT / f"warm-{runtime.name}.json"
    event.write_text(json.dumps(sqs_event(update_bodies(tag, count))))
    control.reset()
    answer = child.invoke(event)
    requests = int(control.stats()["requests"])
    event.unlink()
    if answer["handed_back"] or requests != count:
        raise RuntimeError(
            f"{runtime.name}: {requests} of {count} updates reached the server, "
            f"{answer['handed_back']} handed back"
        )
    return float(answer["wall_s"])


def measure(runtimes: Sequence[Runtime], mode_name: str, log: TextIO) -> Sequence[Runtime]:
    """The cold starts and the warm runs, round-robin over the runtimes."""
    rounds = ROUNDS[mode_name]
    latency_s, batch = HEADLINE
    with LatencyServerProcess(latency=latency_s) as server, moto_server() as endpoint:
        resources = create_resources(endpoint, SECRET, state_table=False)
        environment = function_environment(
            resources, server.url, MAX_CONCURRENCY=str(CONCURRENCY), THREAD_STATE_TABLE=""
        )
        saved = dict(os.environ)
        os.environ.update(environment)
        control = Control(server.root)
        try:
            log.write(f"cold start (fresh interpreter: import + first invocation), {rounds} rounds:\n")
            for index in range(rounds):
                for runtime in runtimes:
                    result = cold_start(runtime, f"cold{runtime.version}r{index}".replace(".", ""))
                    runtime.cold_start_s.append(result["cold_start_s"])
                    runtime.import_s.append(result["import_s"])
                    runtime.first_invoke_s.append(result["first_invoke_s"])
                    log.write(
                        f"  {runtime.name} #{index + 1}: import {format_s(result['import_s'])} + first "
                        f"invocation {format_s(result['first_invoke_s'])} = "
                        f"{format_s(result['cold_start_s'])}\n"
                    )
                    log.flush()
            log.write(f"warm: {batch} updates @ {latency_s * 1000:.0f} ms, {rounds} rounds:\n")
            children = [WarmChild(runtime.artifact, python=runtime.python) for runtime in runtimes]
            try:
                for child, runtime in zip(children, runtimes, strict=True):
                    child.__enter__()
                    warm_run(child, control, runtime, f"warm{runtime.version}".replace(".", ""), CONCURRENCY)
                for index in range(rounds):
                    for child, runtime in zip(children, runtimes, strict=True):
                        tag = f"w{runtime.version}r{index}".replace(".", "")
                        runtime.warm_s.append(warm_run(child, control, runtime, tag, batch))
                        log.write(f"  {runtime.name} #{index + 1}: {format_s(runtime.warm_s[-1])}\n")
                        log.flush()
            finally:
                for child in children:
                    child.__exit__(None, None, None)
        finally:
            control.close()
            os.environ.clear()
            os.environ.update(saved)
    return runtimes


FIGURES = (
    ("cold start (import + first invocation)", "cold_start_s"),
    ("import", "import_s"),
    ("first 1-record invocation", "first_invoke_s"),
    (f"warm: {HEADLINE[1]} updates @ {HEADLINE[0] * 1000:.0f} ms", "warm_s"),
)


def markdown(runtimes: Sequence[Runtime], mode_name: str) -> list[str]:
    """One row per figure: each runtime's median (range), and its ratio to the first runtime's."""
    baseline = runtimes[0]
    header = "| figure | " + " | ".join(f"{r.name} ({r.full_version})" for r in runtimes)
    ratios = " | ".join(f"{r.name} / {baseline.name}" for r in runtimes[1:])
    lines = [
        f"Mode {mode_name}: {len(baseline.warm_s)} rounds, round-robin; median (min-max).",
        "",
        f"{header} | {ratios} |",
        "|---|" + "---:|" * (2 * len(runtimes) - 1),
    ]
    for label, key in FIGURES:
        cells = []
        for runtime in runtimes:
            samples: list[float] = getattr(runtime, key)
            median = statistics.median(samples)
            cells.append(f"{format_s(median)} ({format_s(min(samples))}-{format_s(max(samples))})")
        base = statistics.median(getattr(baseline, key))
        cells += [f"**{statistics.median(getattr(r, key)) / base:.3f}**" for r in runtimes[1:]]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return lines


def run(pythons: Sequence[str], mode_name: str, log: TextIO, *, versus_commit: str | None = None) -> Path:
    """Build, measure, print the table, write ``bench/out/runtimes.*`` (``versions.*`` with a commit)."""
    OUT.mkdir(parents=True, exist_ok=True)
    log.write("artifacts:\n")
    if versus_commit is not None:
        runtimes, name = prepare_versions(versus_commit, log), "versions"
    else:
        runtimes, name = prepare(pythons, log), "runtimes"
    measure(runtimes, mode_name, log)
    table = "\n".join(markdown(runtimes, mode_name)) + "\n"
    written = OUT / f"{name}.md"
    written.write_text(table)
    (OUT / f"{name}.json").write_text(json.dumps([r.as_json() for r in runtimes], indent=2))
    log.write(f"{table}wrote {written}, {OUT / f'{name}.json'}\n")
    return written
