"""Send times on an absolute schedule (PacingSchedule), with exact numbers."""

from __future__ import annotations

import pytest

from minimallm._policy import PacingSchedule


def test_disabled_returns_now() -> None:
    ps = PacingSchedule(0)
    assert ps.interval_s == 0.0
    assert [ps.take(1.23456789) for _ in range(3)] == [1.23456789] * 3
    assert ps.peek(0.3) == 0.3


def test_back_to_back_on_the_exact_grid() -> None:
    ps = PacingSchedule(60)
    assert ps.interval_s == 1.0
    assert [ps.take(t) for t in (0.0, 1.0, 2.0, 3.0)] == [0.0, 1.0, 2.0, 3.0]
    assert ps.peek(3.5) == 4.0
    assert ps.peek(3.5) == 4.0  # peek reserves nothing
    with pytest.raises(ValueError, match="before the slot"):
        ps.take(3.5)


def test_a_late_wake_up_does_not_push_later_slots_back() -> None:
    ps = PacingSchedule(60)
    ps.take(0.0)
    assert ps.take(1.3, waited=True) == 1.0  # woke 0.3 s late for slot 1.0: it stays 1.0
    assert ps.peek(1.3) == 2.0  # not 2.3: no drift
    assert ps.take(2.9, waited=True) == 2.0
    assert ps.peek(2.9) == 3.0


def test_a_send_that_arrives_after_its_slot_reanchors_and_keeps_the_spacing() -> None:
    ps = PacingSchedule(60)
    ps.take(0.0)
    assert ps.take(1.25) == 1.25  # nobody waited for slot 1.0: re-anchor
    assert ps.peek(1.25) == 2.25


def test_reanchors_after_an_idle_gap_without_a_burst() -> None:
    ps = PacingSchedule(120)  # interval 0.5 s
    assert ps.take(10.0) == 10.0
    assert ps.take(10.5) == 10.5
    assert ps.take(100.0) == 100.0  # idle: the slots between 11 and 100 are not banked
    assert ps.peek(100.0) == 100.5


def test_no_60_s_window_holds_more_than_rpm_even_after_late_sends() -> None:
    ps = PacingSchedule(3)  # a slot every 20 s
    for t in (0.0, 20.0, 59.0, 60.0, 80.0):  # the third went out 19 s late
        ps.take(t, waited=True)
    # the grid says 100, but 59 + 60 = 119 is the first time with 3 sends in (59, 119]
    assert ps.peek(81.0) == 119.0


def test_interval_rounds_up_to_the_grid() -> None:
    ps = PacingSchedule(600)
    assert ps.interval_s == 104858 / 2**20  # ceil(60 * 2**20 / 600) ticks
    t = 0.0
    for _ in range(601):
        t = ps.peek(t)
        ps.take(t)
    assert t >= 60.0  # 601 sends never fit into 60 s


def test_a_learned_interval_wider_than_the_rpm_one_applies() -> None:
    ps = PacingSchedule(600)
    ps.take(0.0, 0.25)
    assert ps.peek(0.0, 0.25) == 0.25
    assert ps.peek(0.0) == 0.25  # the next slot was set when the last send went
    ps.take(0.25)  # now without the learned interval: the RPM spacing
    assert ps.peek(0.25) == 0.25 + ps.interval_s
    unpaced = PacingSchedule(0)
    unpaced.take(0.0, 2.0)
    assert unpaced.peek(0.0, 2.0) == 2.0


def test_rejects_negative_rpm() -> None:
    with pytest.raises(ValueError):
        PacingSchedule(-5)


def test_repr_shows_live_state() -> None:
    ps = PacingSchedule(60)
    assert "next=now" in repr(ps)
    ps.take(3.0)
    assert "rpm=60" in repr(ps) and "next=4.000000" in repr(ps)
