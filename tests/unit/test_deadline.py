"""The invocation's deadline (deadline.py): one question, "does this fit?", answered one way."""

from __future__ import annotations

import time

from thread_updater.deadline import Deadline


def test_a_call_fits_only_while_its_worst_case_is_left() -> None:
    # GIVEN a deadline 10 s away
    deadline = Deadline.after(10.0)
    # THEN a 5 s call fits, a 60 s one does not, and a passed deadline allows nothing
    assert deadline.allows(5.0)
    assert not deadline.allows(60.0)
    assert not Deadline.after(-1.0).allows(0.0)


def test_a_reserve_makes_an_earlier_deadline_and_leaves_the_first_unchanged() -> None:
    # GIVEN a deadline, WHEN 4 s are kept for recording a result THEN the call's own deadline is 4 s
    # earlier, a 7 s call no longer fits it, and the invocation's deadline still allows it
    deadline = Deadline.after(10.0)
    call_deadline = deadline.minus(4.0)
    assert call_deadline.at == deadline.at - 4.0
    assert not call_deadline.allows(7.0)
    assert deadline.allows(7.0)


def test_the_wall_clock_form_is_the_same_moment_in_epoch_milliseconds() -> None:
    deadline = Deadline.after(30.0)
    expected_ms = time.time() * 1000 + 30_000
    assert abs(deadline.wall_ms() - expected_ms) < 1_000
