"""Lane scheduling under contention: every lane handed out exactly once, whatever the thread switching."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

import pytest

from thread_updater.processing import lane_puller


@pytest.fixture
def rapid_thread_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as the interpreter allows
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def test_sixteen_workers_pull_every_lane_exactly_once(rapid_thread_switching: None) -> None:
    # Given 20,000 lanes and 16 workers pulling from one source concurrently
    lanes = [[index] for index in range(20_000)]
    pull = lane_puller(lanes)
    taken: list[list[int]] = [[] for _ in range(16)]
    errors: list[BaseException] = []

    def worker(mine: list[int]) -> None:
        try:
            while (lane := pull()) is not None:
                mine.extend(lane)
        except BaseException as error:  # the assertion below reports it
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(mine,)) for mine in taken]

    # When they drain it
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    # Then no worker failed and every lane was handed out exactly once
    assert errors == []
    assert sorted(index for mine in taken for index in mine) == list(range(20_000))
