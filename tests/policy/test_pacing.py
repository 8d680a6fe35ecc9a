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


def _allocated_by(build: object) -> int:
    import tracemalloc

    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        kept = build() if callable(build) else None
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    del kept
    return after - before


def test_memory_is_bounded_at_any_rpm() -> None:
    def paced(rpm: int) -> PacingSchedule:
        ps = PacingSchedule(rpm)
        t = 0.0
        for _ in range(5000):
            t = ps.peek(t)
            ps.take(t, waited=True)
        return ps

    small, huge = _allocated_by(lambda: paced(600)), _allocated_by(lambda: paced(6_000_000))
    # the send history is a ring of at most 16,384 ticks (128 KiB), whatever the RPM
    assert huge < 140_000, huge
    assert huge <= small + 140_000, (small, huge)


def _late_sends(ps: PacingSchedule, n: int) -> list[float]:
    t, sends = 0.0, []
    for k in range(n):  # every third wake-up comes almost a whole slot (5 s) late
        t = ps.peek(t) + (4.9 if k % 3 == 1 else 0.0)
        ps.take(t, waited=True)
        sends.append(t)
    return sends


def test_high_rpm_keeps_the_exact_cap_with_a_bounded_ring() -> None:
    # rpm 12 with a ring of at most 4 times: 4 sends per 20 s chained 3 times = 12 per 60 s
    sends = _late_sends(PacingSchedule(12, max_ring=4), 40)
    for j, start in enumerate(sends):
        assert sum(start <= s < start + 60.0 for s in sends[j:]) <= 12
    # the exact ring of 12 times lets the 40th send go at most one slot earlier
    assert sends[-1] <= _late_sends(PacingSchedule(12), 40)[-1] + 5.0


def test_a_ring_size_that_divides_rpm_loses_no_rate() -> None:
    ps = PacingSchedule(1000, max_ring=64)  # 50 divides 1000: 50 sends per 3 s, exactly
    t, count = 0.0, 0
    while True:
        t = ps.peek(t)
        if t >= 120.0:
            break
        ps.take(t, waited=True)
        count += 1
    assert count == 2000


def test_rejects_a_ring_bound_below_one() -> None:
    with pytest.raises(ValueError, match="max_ring"):
        PacingSchedule(60, max_ring=0)
