"""Measurements that need a fresh interpreter: cold start and peak RSS (``python -m bench.child``).

Started by ``bench.run`` with the function's environment already set (moto endpoint, secret,
``PORTKEY_BASE_URL`` = the latency server). Prints one JSON line on the real stdout; the
handlers' own logs and metrics go to /dev/null, as they would go to a pipe in Lambda.

Only the standard library is imported before the clock starts, so the measured import is
exactly what a Lambda init would pay for the handler module.
"""

from __future__ import annotations

import time

_STARTED = time.perf_counter()

import argparse  # noqa: E402 - after the clock on purpose (stdlib, negligible)
import contextlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import resource  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402


class Context:
    """The attributes of a Lambda context that the handlers read."""

    function_name = "ModifyThreadFunction"
    function_version = "$LATEST"
    memory_limit_in_mb = 256
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:ModifyThreadFunction"

    def __init__(self, timeout_s: float) -> None:
        self.aws_request_id = str(uuid.uuid4())
        self._deadline = time.monotonic() + timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


def max_rss_kib() -> int:
    """Peak RSS so far, KiB (``ru_maxrss``; KiB on Linux).

    Linux keeps ``ru_maxrss`` across ``execve``: a process spawned straight from a big parent starts
    with the parent's peak. ``bench.run`` therefore starts this module through a small launcher
    process, and :func:`peak_rss_hwm_kib` (``VmHWM``, per address space, reset by exec) cross-checks.
    """
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def peak_rss_hwm_kib() -> int:
    """``VmHWM`` from /proc/self/status, KiB (0 where there is no /proc)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


def load_handler(which: str, src: Path | None = None) -> Any:
    """``ours`` from ``src`` (this tree's ``src/`` by default, or a built artifact: the parent puts
    it first on ``PYTHONPATH``), or the SDK's."""
    if which == "ours":
        import handler

        expected = (src or Path(__file__).resolve().parent.parent / "src").resolve()
        if not Path(handler.__file__ or "").resolve().is_relative_to(expected):
            raise SystemExit(f"handler is {handler.__file__}, not from {expected}: PYTHONPATH={expected}?")
        return handler.lambda_handler
    from bench import sdk_handler

    return sdk_handler.lambda_handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(allow_abbrev=False, prog="python -m bench.child")
    parser.add_argument("which", choices=["ours", "sdk"])
    parser.add_argument("--event", type=Path, required=True, help="the Lambda event, as JSON")
    parser.add_argument("--timeout", type=float, default=300.0)
    parser.add_argument(
        "--src", type=Path, help="ours: import handler.py from this directory (default: src/)"
    )
    args = parser.parse_args(argv)
    real_stdout = sys.stdout
    with open(os.devnull, "w") as devnull, contextlib.redirect_stdout(devnull):
        started = time.perf_counter()
        lambda_handler = load_handler(args.which, args.src)
        imported = time.perf_counter()
        rss_after_import = max_rss_kib()
        event_text = args.event.read_text()
        event = json.loads(event_text)  # the runtime hands the handler a freshly parsed event
        rss_with_event = max_rss_kib()
        invoke_started = time.perf_counter()
        response = lambda_handler(event, Context(args.timeout))
        finished = time.perf_counter()
    failures = len(response.get("batchItemFailures", [])) if isinstance(response, dict) else -1
    real_stdout.write(
        json.dumps(
            {
                "which": args.which,
                "records": len(event["Records"]),
                "failures": failures,
                "before_import_s": started - _STARTED,
                "import_s": imported - started,
                "first_invoke_s": finished - invoke_started,
                "cold_start_s": (imported - started) + (finished - invoke_started),
                "rss_after_import_kib": rss_after_import,
                "rss_with_event_kib": rss_with_event,
                "peak_rss_kib": max_rss_kib(),
                "peak_vmhwm_kib": peak_rss_hwm_kib(),
            }
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
