"""The soak's settings: sizes, timeouts, which faults and how often, where figures and logs go."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
# The ordering run: the same kinds, with late writes (a read timeout the upstream still applies)
# five times as common, because they are what can overtake a newer update.
ORDERING_FAULT_WEIGHTS: Mapping[str, float] = {**FAULT_WEIGHTS, "read timeout": 7.5}
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
    # has thread_updater.aws.WORST_CASE_CALL_S left, and with the state table keeps
    # thread_updater.applier.RECORD_RESERVE_S back from every Portkey call to record its result, so
    # this must be well above their sum (at 12 s no call could start). The source
    # queue's visibility timeout must exceed it (the template's is 660 s for 60 s), or a message
    # still being processed is delivered to a second container. A handed-back message reappears
    # after the function's own retry delay, shortened to at most max_handback_delay_s (see
    # bench.soak.worker._SerializedPoller._settle), which must not be below the heal delay.
    function_timeout_s: float = 20.0
    visibility_timeout_s: int = 25
    max_handback_delay_s: int = 3
    # The state table (THREAD_STATE_TABLE) and its timings: a thread stays held this long after a
    # request whose outcome is unknown, and such a request's thread is healed after heal_delay_s
    # (the template's defaults are 10 s and 120 s; short here so a run sees its heals).
    state_table: bool = True
    # What the stand-in does with a metadata map (merge: keys left out stay; replace: the map is
    # whole); the function runs with its default METADATA_SEMANTICS=merge, which must be right for both.
    upstream_semantics: str = "merge"
    lease_grace_s: float = 1.0
    heal_delay_s: int = 2
    window_s: float = 0.0
    queue_depth: int = 100
    max_seconds: float = 150.0
    # A request that timed out on the client may still be applied upstream, later. True models that
    # honestly; the FIFO run turns it off because no client can order a write it no longer sees
    # (Modify Thread has no conditional update), see the test.
    late_timeout_writes: bool = True
    # How long after the client's read timeout a late write lands upstream.
    late_write_lag_s: float = 0.25
    fault_weights: Mapping[str, float] = field(default_factory=lambda: dict(FAULT_WEIGHTS))
    # The ordering run (bench.soak.ordering): each thread's updates carry versions 1..n in the body,
    # set metadata, tool_resources or both, and are sent shuffled, a share of them twice.
    ordering: bool = False
    updates_per_thread: int = 5
    duplicate_share: float = 0.2
    label: str = "standard"

    def __post_init__(self) -> None:
        if self.state_table and self.max_handback_delay_s < self.heal_delay_s + 1:
            # A record handed back after an unknown outcome must come back after the heal delay,
            # or its thread is never healed (the function hands it back with exactly that delay).
            raise ValueError("max_handback_delay_s must be at least heal_delay_s + 1")

    def thread_ids(self) -> list[str]:
        return [f"soak_{index:04d}" for index in range(self.threads)]

    def gone_thread_ids(self) -> list[str]:
        if self.gone_threads <= 0:
            return []
        return [f"soak_{index:04d}" for index in range(0, self.threads, self.threads // self.gone_threads)][
            : self.gone_threads
        ]


def ordering_config(*, threads: int = 60, state_table: bool = True, **overrides: Any) -> SoakConfig:
    """The ordering run: versions in the body, shuffled and duplicated, late writes that land after
    the lease's grace (so only a heal can undo them) but before the heal delay ends (so it can)."""
    settings: dict[str, Any] = {
        "ordering": True,
        "threads": threads,
        "updates": threads * SoakConfig.updates_per_thread,
        "gone_threads": 3,
        "state_table": state_table,
        "fault_weights": dict(ORDERING_FAULT_WEIGHTS),
        "late_write_lag_s": 1.5,
        "lease_grace_s": 0.5,
        "heal_delay_s": 2,
        "max_handback_delay_s": 3,
        "max_receive_count": 32,  # as the template: hand-backs while a thread is held are many
        "label": "ordering" if state_table else "ordering-without-state-table",
        **overrides,
    }
    return SoakConfig(**settings)
