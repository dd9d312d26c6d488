"""The soak's settings: sizes, timeouts, which faults and how often, where figures and logs go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
FIGURES_FILE = ROOT / "build" / "soak-figures.txt"
LOG_DIR = ROOT / "build" / "soak"
SECRET = {"api_key": "pk-soak-api-key", "virtual_key": "vk-soak"}

# Fault kinds and their relative weights among the injected faults. The slow ones (a Retry-After of
# one second, a read timeout, an answer just under the timeout) are rarer: every batch waits for its
# slowest lane, and they are the ones that cost wall time.
FAULT_WEIGHTS: Mapping[str, float] = {
    "429 Retry-After: 0": 3.0,
    "429 Retry-After: 1": 1.0,
    "429 without Retry-After": 3.0,
    "500": 2.0,
    "502": 2.0,
    "503": 2.0,
    "read timeout": 1.5,
    "dropped before the answer": 2.0,
    "dropped mid-answer": 2.0,
    "slow answer under the timeout": 1.5,
}
# Faults after which the stand-in has written the update although the function saw no answer.
SILENT_WRITE_FAULTS = frozenset({"dropped mid-answer", "read timeout"})


@dataclass(frozen=True)
class SoakConfig:
    updates: int = 2000
    threads: int = 300
    gone_threads: int = 5
    fault_rate: float = 0.3
    seed: int = 20261125
    fifo: bool = False
    workers: int = 8
    batch_size: int = 10
    max_concurrency: int = 16
    max_attempts: int = 3
    max_receive_count: int = 5
    read_timeout_s: float = 0.5
    # Each invocation gets this much time (LocalContext). The function dead-letters only while it
    # has thread_updater.aws.WORST_CASE_CALL_S left, so this must be well above that. The source
    # queue's visibility timeout must exceed it (the template's is 660 s for 60 s), or a message
    # still being processed is delivered to a second container; a handed-back message reappears
    # after handback_visibility_s (see bench.soak.worker._SerializedPoller._settle).
    function_timeout_s: float = 12.0
    visibility_timeout_s: int = 15
    handback_visibility_s: int = 1
    window_s: float = 0.0
    queue_depth: int = 100
    max_seconds: float = 150.0
    # A request that timed out on the client may still be applied upstream, later. True models that
    # honestly; the FIFO run turns it off because no client can order a write it no longer sees
    # (Modify Thread has no conditional update), see the test.
    late_timeout_writes: bool = True
    label: str = "standard"

    def thread_ids(self) -> list[str]:
        return [f"soak_{index:04d}" for index in range(self.threads)]

    def gone_thread_ids(self) -> list[str]:
        return [f"soak_{index:04d}" for index in range(0, self.threads, self.threads // self.gone_threads)][
            : self.gone_threads
        ]
