"""The ordering run's check: every thread holds, per metadata key and per field, its newest applied update.

What "newest applied" means (the function's ordering contract, METADATA_SEMANTICS=merge): of a
thread's updates that were not dead-lettered (applied or superseded; a duplicate counts as its
version once more), for each metadata key the value of the highest version that sets that key, and
for ``tool_resources`` the highest version that sets it. Version-order application of those updates
on a merging upstream gives exactly that; a thread that holds anything else is *stale*, whether the
upstream merges or replaces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Convergence", "check_convergence"]

UPDATE_FIELDS = ("metadata", "tool_resources")  # what Modify Thread sets (thread_updater.models)

_NOT_DEAD_LETTERED = frozenset({"applied", "superseded"})


@dataclass
class Convergence:
    threads_checked: int = 0
    stale: list[str] = field(default_factory=list)  # one line per stale field: thread, versions, values


def check_convergence(
    *,
    bodies: Mapping[str, str],
    version_attributes: Mapping[str, int],
    buckets: Mapping[str, str],
    final_threads: Mapping[str, dict[str, Any] | None],
) -> Convergence:
    """Compare each thread's stored fields with version-order application of its applied updates."""
    newest: dict[str, dict[str, tuple[int, Any]]] = {}  # thread -> field -> (version, value)
    versions: dict[str, list[tuple[int, str]]] = {}  # thread -> (version, bucket) of every message
    for message_id, body in bodies.items():
        document = json.loads(body)
        thread_id = document["thread_id"]
        version = int(document.get("version") or version_attributes[message_id])
        versions.setdefault(thread_id, []).append((version, buckets.get(message_id, "missing")))
        if buckets.get(message_id) not in _NOT_DEAD_LETTERED:
            continue
        fields = newest.setdefault(thread_id, {})
        if "tool_resources" in document and fields.get("tool_resources", (0, None))[0] < version:
            fields["tool_resources"] = (version, document["tool_resources"])
        for key, value in (document.get("metadata") or {}).items():
            if fields.get(f"m:{key}", (0, None))[0] < version:
                fields[f"m:{key}"] = (version, value)
    result = Convergence()
    for thread_id, stored in final_threads.items():
        result.threads_checked += 1
        per_slot = newest.get(thread_id, {})
        keys = {name[2:]: slot for name, slot in per_slot.items() if name.startswith("m:")}
        expected = {
            "metadata": (
                max((v for v, _ in keys.values()), default=0),
                {k: val for k, (_, val) in keys.items()},
            ),
            "tool_resources": per_slot.get("tool_resources", (0, {})),
        }
        for name in UPDATE_FIELDS:
            version, value = expected[name]  # version 0: no applied update sets it
            actual = (stored or {}).get(name, {})
            if actual != value:
                result.stale.append(
                    f"{thread_id}: {name} holds {json.dumps(actual)}, expected version {version} "
                    f"{json.dumps(value)}; its updates (version, place): "
                    f"{sorted(versions.get(thread_id, []))}"
                )
    return result
