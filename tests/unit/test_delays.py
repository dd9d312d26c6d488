"""The retry delays (delays.py): each row of its table, bounds and jitter."""

from __future__ import annotations

import pytest

from thread_updater.delays import (
    BACKOFF_CAP_S,
    MAX_VISIBILITY_S,
    RETRY_CAP_S,
    attempt_delay,
    busy_delay,
    secret_retry_pause,
    transient_delay,
    wait_delay,
)

NOW = 1_700_000_000_000


def test_an_attempt_waits_what_the_server_asked_for_and_counts_it() -> None:
    assert attempt_delay(3, 2.5, contention=False) == (2.5, 1)


@pytest.mark.parametrize(("contention", "base_s"), [(False, 0.2), (True, 1.0)])
def test_an_attempt_backs_off_with_full_jitter_longer_for_contention(contention: bool, base_s: float) -> None:
    # GIVEN no Retry-After WHEN the n-th attempt failed THEN the wait is within [0, min(cap, base·2^(n-1))]
    for attempts in (1, 2, 3, 10):
        ceiling = min(BACKOFF_CAP_S, base_s * 2 ** (attempts - 1))
        for _ in range(50):
            wait, asked = attempt_delay(attempts, None, contention=contention)
            assert (0.0 <= wait <= ceiling, asked) == (True, 0)


def test_a_secret_read_is_retried_within_half_a_second() -> None:
    assert all(0.0 <= secret_retry_pause() <= 0.5 for _ in range(50))


@pytest.mark.parametrize("receive_count", [1, 2, 3, 5, 8, 20, 1000])
def test_transient_delay_doubles_per_receive_within_half_and_the_cap(receive_count: int) -> None:
    ceiling = min(RETRY_CAP_S, 2.0 * 2 ** (receive_count - 1))
    for _ in range(50):
        assert ceiling / 2 - 0.1 <= transient_delay(receive_count, None) <= ceiling


def test_transient_delay_is_at_least_the_servers_retry_after() -> None:
    assert transient_delay(1, 30.0) == 30.0
    assert transient_delay(1, 10_000.0) == RETRY_CAP_S


def test_busy_delay_waits_out_the_other_lease_with_jitter() -> None:
    assert 12.0 <= busy_delay(NOW + 12_000, NOW) <= 13.0
    assert 1.0 <= busy_delay(None, NOW) <= 2.0
    assert 1.0 <= busy_delay(NOW - 5_000, NOW) <= 2.0


def test_a_wait_for_a_heal_hours_away_is_one_receive_not_many() -> None:
    # LATE_WRITE_HEAL_DELAY_SECONDS may be 12 h: a waiting update must not burn a receive every 300 s
    assert 3 * 3600 <= wait_delay(NOW + 3 * 3600 * 1000, NOW) <= 3 * 3600 + 1
    assert wait_delay(NOW + 13 * 3600 * 1000, NOW) == MAX_VISIBILITY_S
