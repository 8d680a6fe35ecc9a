"""Invariants of the flow-control cores, checked with hypothesis (pure: no trio)."""

from __future__ import annotations

import bisect
import itertools
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm._policy import (
    ConcurrencyControl,
    CooldownState,
    OverloadSignal,
    PacingSchedule,
    PauseControl,
)
from minimallm._policy.flow import CongestionEvent, FlowWatch
from minimallm._policy.pacing import MAX_RING

FAST = settings(max_examples=100, deadline=None)
clock = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)
GRID = 2.0**-20


# --------------------------------------------------------------------------- concurrency


@st.composite
def answer_streams(draw: st.DrawFn) -> tuple[int, list[tuple[float, float, bool, int]]]:
    """A cap and answers (now, sent_at, overloaded, others) in time order, mixing
    bursts, sustained overload, sporadic overload and clean stretches."""
    cap = draw(st.integers(1, 128))
    n = draw(st.integers(1, 400))
    rng = random.Random(draw(st.integers(0, 2**32)))
    p_overload = draw(st.sampled_from([0.0, 0.02, 0.05, 0.5, 1.0]))
    now = draw(st.floats(0.0, 1e5))
    answers = []
    for _ in range(n):
        now += rng.choice([0.0, 1e-4, 0.01, 0.1, 1.0])
        latency = rng.choice([0.0, 0.001, 0.05, 0.5, 3.0])
        answers.append((now, now - latency, rng.random() < p_overload, rng.randrange(0, cap)))
    return cap, answers


@FAST
@given(stream=answer_streams(), ticks=st.lists(st.floats(0.0, 5.0), max_size=5))
def test_concurrency_limit_stays_in_bounds_and_decreases_once_per_episode(
    stream: tuple[int, list[tuple[float, float, bool, int]]], ticks: list[float]
) -> None:
    cap, answers = stream
    cc = ConcurrencyControl(cap)
    last_decrease = -math.inf
    cause = False  # an overload of an attempt sent after the last decrease was seen

    def check(now: float, count_before: int) -> None:
        nonlocal last_decrease, cause
        assert 1 <= cc.limit <= cap
        if cc.decreases != count_before:
            assert cc.decreases == count_before + 1
            assert cause  # one decrease per episode, each caused by a fresh overload
            cause = False
            last_decrease = now

    for now, sent_at, overloaded, others in answers:
        before, count_before = cc.limit, cc.decreases
        if overloaded and sent_at > last_decrease:
            cause = True
        cc.on_answer(now, sent_at, overloaded, others)
        check(now, count_before)
        if not overloaded and count_before == cc.decreases:
            assert cc.limit >= before  # clean answers never lower the limit
        for dt in ticks:
            count_before = cc.decreases
            cc.tick(now + dt, others)
            check(now + dt, count_before)


@FAST
@given(cap=st.integers(1, 128), start=st.integers(1, 128), n=st.integers(1, 300))
def test_concurrency_recovers_monotonically_while_answers_are_clean(
    cap: int, start: int, n: int
) -> None:
    cc = ConcurrencyControl(cap)
    for _ in range(8):  # a step, decided with `start` attempts still out
        cc.on_answer(1.0, 0.5, True, cap)
    cc.tick(10.0, min(start, cap))
    limits = [cc.limit]
    t = 10.0
    for _ in range(n):
        t += 0.05
        cc.on_answer(t, t - 0.05, False, cc.limit - 1)
        limits.append(cc.limit)
    assert limits == sorted(limits)
    assert limits[-1] <= cap


# --------------------------------------------------------------------------- congestion


@FAST
@given(seed=st.integers(0, 2**32), p=st.floats(0.0, 0.05))
def test_sporadic_overloads_are_not_congestion(seed: int, p: float) -> None:
    rng = random.Random(seed)
    sig = OverloadSignal()
    t = 0.0
    for _ in range(5000):
        t += 0.002
        sig.observe(t, t - 0.05, rng.random() < p)
    assert sig.steps == 0


# --------------------------------------------------------------------------- the shared pause


@FAST
@given(
    seed=st.integers(0, 2**32),
    p=st.floats(0.0, 0.05),
    retry_after=st.one_of(st.none(), st.floats(0.0, 120.0)),
    floor_s=st.floats(0.0, 5.0),
)
def test_sporadic_overloads_never_close_the_gate_longer_than_floor_or_retry_after(
    seed: int, p: float, retry_after: float | None, floor_s: float
) -> None:
    """The whole chain as the Cooldown sees it: the Limiter's congestion events from
    random answers, and the overload answers themselves."""
    rng = random.Random(seed)
    sig = OverloadSignal()
    watch = FlowWatch(sig)
    pc = PauseControl(CooldownState(floor_s=floor_s, cap_s=30.0, halflife_s=20.0, initial_s=0.5))
    t = 0.0
    for _ in range(3000):
        t += 0.005
        overloaded = rng.random() < p
        sig.observe(t, t - 0.1, overloaded)
        decisions = [
            pc.on_congestion(e.at, e.floor_depth)
            for e in watch.observe(t, t - 0.1, "overload" if overloaded else "ok", 1)
            if isinstance(e, CongestionEvent)
        ]
        if overloaded:
            decisions.append(pc.on_attempt(t, "overload", retry_after_s=retry_after))
        for decision in decisions:
            if decision is not None and decision.hold:
                bound = max(floor_s, min(30.0, retry_after or 0.0))
                assert decision.until - t <= bound + 1e-9
    assert pc.pauses == 0  # in fact it never closes at all


overload_events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=1e6),
        st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e5)),
        st.booleans(),
    ),
    min_size=1,
    max_size=40,
).map(lambda events: sorted(events, key=lambda event: event[0]))


@FAST
@given(
    floor_s=st.floats(0.0, 10.0),
    cap_s=st.floats(0.0, 120.0),
    halflife_s=st.one_of(st.just(0.0), st.floats(0.0, 100.0), st.just(math.inf)),
    initial_s=st.floats(0.0, 5.0),
    events=overload_events,
    later=st.floats(0.0, 200.0),
)
def test_cooldown_deadline_never_moves_back_and_expires(
    floor_s: float,
    cap_s: float,
    halflife_s: float,
    initial_s: float,
    events: list[tuple[float, float | None, bool]],
    later: float,
) -> None:
    cd = CooldownState(floor_s=floor_s, cap_s=cap_s, halflife_s=halflife_s, initial_s=initial_s)
    previous = cd.deadline()
    for now, retry_after_s, persisted in events:
        deadline = cd.pause(now, retry_after_s=retry_after_s, persisted=persisted)
        assert deadline == cd.deadline() >= previous  # never moves backwards
        assert deadline <= now + cap_s  # events are sorted: the gate opens within cap_s
        if retry_after_s is not None:
            assert deadline >= now + min(cap_s, max(floor_s, retry_after_s))
        assert cd.level(now + later) <= cd.level(now) <= cap_s  # decays, never grows alone
        previous = deadline
    last = events[-1][0]
    assert cd.remaining(last + cap_s) == 0.0  # it expires


# --------------------------------------------------------------------------- pacing


@st.composite
def pacing_runs(draw: st.DrawFn) -> tuple[int, list[tuple[float, float]], int]:
    """An rpm, (arrival, wake-up lateness) pairs (bursts, near-interval gaps, idles) and
    a ring bound: the default, or a tiny one so that the bounded ring (rpm > bound)
    meets bursts of late wake-ups within 150 sends."""
    rpm = draw(st.one_of(st.integers(1, 10), st.integers(1, 100_000)))
    max_ring = draw(st.one_of(st.just(MAX_RING), st.integers(1, 12)))
    interval = 60.0 / rpm
    gaps = st.one_of(st.just(0.0), st.floats(0.0, 2.0 * interval), st.floats(0.0, 120.0))
    late = st.one_of(st.just(0.0), st.floats(0.0, interval))
    now = draw(clock)
    runs = []
    for delta, lateness in draw(st.lists(st.tuples(gaps, late), min_size=1, max_size=150)):
        now += delta
        runs.append((now, lateness))
    return rpm, runs, max_ring


def _drive(rpm: int, runs: list[tuple[float, float]], max_ring: int = MAX_RING) -> list[float]:
    """Sends of a Pacer that grants each request at its slot, woken ``lateness`` late."""
    ps = PacingSchedule(rpm, max_ring=max_ring)
    sends: list[float] = []
    for arrival, lateness in runs:
        now = max(arrival, sends[-1] if sends else arrival)
        slot = ps.peek(now)
        if slot > now:  # the request waits for its slot; the wake-up may come late
            now = slot + lateness
            ps.take(now, waited=True)
        else:
            ps.take(now)
        sends.append(now)
    return sends


@FAST
@given(run=pacing_runs())
def test_no_60_s_window_holds_more_than_rpm_sends_however_late_the_wake_ups(
    run: tuple[int, list[tuple[float, float]], int],
) -> None:
    rpm, runs, max_ring = run
    sends = _drive(rpm, runs, max_ring)
    for j, start in enumerate(sends):  # windows [t, t + 60) starting at a send are fullest
        assert bisect.bisect_left(sends, start + 60.0) - j <= rpm


@FAST
@given(run=pacing_runs())
def test_without_late_wake_ups_sends_keep_the_spacing(
    run: tuple[int, list[tuple[float, float]], int],
) -> None:
    rpm, runs, max_ring = run
    sends = _drive(rpm, [(arrival, 0.0) for arrival, _ in runs], max_ring)
    for a, b in itertools.pairwise(sends):
        assert b - a >= 60.0 / rpm - GRID


@FAST
@given(rpm=st.integers(1, 400), max_ring=st.integers(1, 40))
def test_a_bounded_ring_keeps_the_rate_and_its_memory(rpm: int, max_ring: int) -> None:
    """Saturated for two minutes: at least ``rpm - rpm % K`` sends per minute (K the
    ring size: rpm up to ``max_ring``, above it between ``max_ring // 2`` and
    ``max_ring``, losing under ``rpm / max_ring``), never more than rpm per 60 s
    (checked above), and no more than ``max_ring`` send times kept."""
    ps = PacingSchedule(rpm, max_ring=max_ring)
    now, sends = 0.0, 0
    while (now := ps.peek(now)) < 120.0:
        ps.take(now, waited=True)
        sends += 1
    assert ps._ring is not None and len(ps._ring) <= max_ring
    size = len(ps._ring)
    assert size == rpm if rpm <= max_ring else max_ring // 2 <= size
    lost = rpm % size
    assert lost == 0 or lost < rpm / max_ring
    assert sends >= 2 * (rpm - lost) - 1  # the last one may fall just past 120 s


@FAST
@given(rpm=st.integers(2, 100_000), count=st.integers(2, 400), late=st.floats(0.0, 0.9))
def test_late_wake_ups_do_not_drift(rpm: int, count: int, late: float) -> None:
    count = min(count, rpm)  # (beyond rpm sends the exact 60-s cap may add a send's lateness)
    ps = PacingSchedule(rpm)
    now = ps.peek(0.0)
    ps.take(now)
    for _ in range(count - 1):
        slot = ps.peek(now)
        now = slot + late * ps.interval_s  # every wake-up late by the same fraction
        ps.take(now, waited=True)
    # the k-th send is late by at most one interval's fraction: the schedule did not drift
    assert now - (count - 1) * ps.interval_s <= late * ps.interval_s + GRID * count
