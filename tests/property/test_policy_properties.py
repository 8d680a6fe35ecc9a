"""Invariants of the pure decision cores (minimallm._policy), checked with hypothesis."""

from __future__ import annotations

import bisect
import math
import random
from datetime import UTC, datetime
from email.utils import format_datetime
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm._policy import (
    CooldownState,
    PacingSchedule,
    backoff_bounds,
    backoff_delay,
    parse_retry_after,
    retry_delay,
)

FAST = settings(max_examples=100, deadline=None)

seconds = st.floats(min_value=0.0, max_value=1e4, allow_nan=False, allow_infinity=False)
jitters = st.floats(min_value=0.0, max_value=1.0)
attempts = st.one_of(
    st.integers(min_value=1, max_value=64),
    st.integers(min_value=1, max_value=10**12),
)
seeds = st.integers(min_value=0, max_value=2**32)
# a trio clock reads perf_counter() plus an offset: anything from 0 to ~1e7 s
clock = st.floats(min_value=0.0, max_value=1e7, allow_nan=False, allow_infinity=False)


# --------------------------------------------------------------------------- backoff


@FAST
@given(n=attempts, base_s=seconds, max_s=seconds, jitter=jitters, seed=seeds)
def test_backoff_lies_within_bounds_and_under_max(
    n: int, base_s: float, max_s: float, jitter: float, seed: int
) -> None:
    low, high = backoff_bounds(n, base_s=base_s, max_s=max_s, jitter=jitter)
    assert 0.0 <= low <= high <= max_s
    rng = random.Random(seed)
    for _ in range(5):
        delay = backoff_delay(n, base_s=base_s, max_s=max_s, jitter=jitter, rng=rng)
        assert low <= delay <= high <= max_s


@FAST
@given(base_s=seconds, max_s=seconds, jitter=jitters, n=st.integers(1, 3000))
def test_backoff_bounds_follow_the_formula(
    base_s: float, max_s: float, jitter: float, n: int
) -> None:
    low, high = backoff_bounds(n, base_s=base_s, max_s=max_s, jitter=jitter)
    # the formula in exact rational arithmetic: no overflow, no premature clamp
    if Fraction(base_s) * 2 ** (n - 1) >= Fraction(max_s):
        nominal = max_s
    else:
        nominal = math.ldexp(base_s, n - 1)
    assert low == nominal * (1.0 - jitter)
    assert high == min(max_s, nominal * (1.0 + jitter))
    # and the nominal delay never shrinks as attempts go on
    low_next, _ = backoff_bounds(n + 1, base_s=base_s, max_s=max_s, jitter=0.0)
    assert low_next >= nominal


@FAST
@given(
    n=attempts,
    retry_after_s=st.one_of(st.floats(allow_nan=False), st.floats(min_value=0.0, max_value=100.0)),
    base_s=seconds,
    max_s=seconds,
    jitter=jitters,
    cap_s=seconds,
    seed=seeds,
)
def test_retry_delay_with_retry_after_never_exceeds_cap(
    n: int,
    retry_after_s: float,
    base_s: float,
    max_s: float,
    jitter: float,
    cap_s: float,
    seed: int,
) -> None:
    delay = retry_delay(
        n,
        retry_after_s,
        base_s=base_s,
        max_s=max_s,
        jitter=jitter,
        cap_s=cap_s,
        rng=random.Random(seed),
    )
    assert 0.0 <= delay <= cap_s
    if 0.0 <= retry_after_s <= cap_s:
        assert delay == retry_after_s


# --------------------------------------------------------------------------- Retry-After


@FAST
@given(
    headers=st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "x-other"]),
        st.one_of(
            st.text(max_size=40),
            st.builds(
                "{}{}{}e{}".format,
                st.sampled_from(["", "+", "-"]),
                st.integers(0, 10**40),
                st.sampled_from(["", ".", ".5", ".25"]),
                st.integers(-400, 400),
            ),
            st.builds(
                "{}, {} {} {} {:02}:{:02}:{:02} {}".format,
                st.sampled_from(["Mon", "Tue", "Wed"]),
                st.integers(0, 40),
                st.sampled_from(["Jan", "Feb", "Oct", "Foo"]),
                st.integers(0, 999_999),
                st.integers(0, 99),
                st.integers(0, 99),
                st.integers(0, 99),
                st.sampled_from(["GMT", "-0000", "+2359", "-2359", "+0100", "XYZ"]),
            ),
        ),
    ),
    now_wall=st.floats(min_value=0.0, max_value=4e9),
)
def test_parse_retry_after_never_raises_and_is_finite(
    headers: dict[str, str], now_wall: float
) -> None:
    got = parse_retry_after(headers, now_wall=now_wall)
    assert got is None or (math.isfinite(got) and got >= 0.0)
    if "retry-after" not in headers and "retry-after-ms" not in headers:
        assert got is None


@FAST
@given(
    when=st.integers(min_value=0, max_value=4_000_000_000),
    now_wall=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_parse_retry_after_http_date_round_trip(when: int, now_wall: int) -> None:
    header = format_datetime(datetime.fromtimestamp(when, UTC), usegmt=True)
    got = parse_retry_after({"retry-after": header}, now_wall=float(now_wall))
    assert got == max(0.0, float(when - now_wall))


@FAST
@given(value=st.integers(min_value=-(10**9), max_value=10**9))
def test_parse_retry_after_integer_seconds_and_ms(value: int) -> None:
    assert parse_retry_after({"retry-after": str(value)}, now_wall=0.0) == max(0.0, value)
    both = {"retry-after": "1", "retry-after-ms": str(value)}
    assert parse_retry_after(both, now_wall=0.0) == max(0.0, value) / 1000.0


# --------------------------------------------------------------------------- cooldown

overload_events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=1e6),
        st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e5)),
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
    probe=st.floats(0.0, 200.0),
)
def test_cooldown_deadline_monotone_bounded_and_expiring(
    floor_s: float,
    cap_s: float,
    halflife_s: float,
    initial_s: float,
    events: list[tuple[float, float | None]],
    probe: float,
) -> None:
    cd = CooldownState(floor_s=floor_s, cap_s=cap_s, halflife_s=halflife_s, initial_s=initial_s)
    previous = cd.deadline()
    for now, retry_after_s in events:
        deadline = cd.on_overload(now, retry_after_s)
        assert deadline == cd.deadline()
        assert deadline >= previous  # never moves backwards
        assert deadline <= now + cap_s  # events are sorted: the gate opens within cap_s
        previous = deadline
        level = cd.level(now)
        assert min(cap_s, max(floor_s, initial_s)) <= level <= cap_s
        if retry_after_s is not None:
            assert deadline >= now + min(retry_after_s, cap_s)
        assert cd.remaining(now) == max(0.0, deadline - now)
        # decay between overloads: the level never grows on its own and stays <= cap
        assert cd.level(now + probe) <= level
    last = events[-1][0]
    assert cd.remaining(last + cap_s) == 0.0
    assert cd.remaining(last + cap_s + probe) == 0.0
    # (the gate-opening bound is on the deadline, checked above; remaining() is the
    # float difference and may exceed cap_s by an ulp)
    assert cd.remaining(last + probe) == max(0.0, cd.deadline() - (last + probe))


@FAST
@given(
    cap_s=st.floats(1.0, 60.0),
    initial_s=st.floats(0.01, 1.0),
    count=st.integers(1, 30),
    now=st.floats(0.0, 1e6),
)
def test_cooldown_consecutive_overloads_double_until_cap(
    cap_s: float, initial_s: float, count: int, now: float
) -> None:
    cd = CooldownState(floor_s=0.0, cap_s=cap_s, halflife_s=20.0, initial_s=initial_s)
    for _ in range(count):
        cd.on_overload(now)
    assert cd.level(now) == min(cap_s, initial_s * 2.0 ** (count - 1))


# --------------------------------------------------------------------------- pacing

GRID = 2.0**-20


@st.composite
def pacing_runs(draw: st.DrawFn) -> tuple[int, list[float]]:
    """An rpm and non-decreasing request times, mixing bursts, near-interval gaps, idles."""
    rpm = draw(st.one_of(st.integers(1, 10), st.integers(1, 100_000)))
    interval = 60.0 / rpm
    gaps = st.one_of(
        st.just(0.0),
        st.floats(0.0, 2.0 * interval),
        st.floats(0.0, 120.0),
    )
    start = draw(clock)
    deltas = draw(st.lists(gaps, min_size=1, max_size=150))
    times: list[float] = []
    now = start
    for delta in deltas:
        now += delta
        times.append(now)
    return rpm, times


@FAST
@given(run=pacing_runs())
def test_pacing_spacing_window_and_no_early_slot(run: tuple[int, list[float]]) -> None:
    rpm, times = run
    ps = PacingSchedule(rpm)
    slots: list[float] = []
    for now in times:
        peeked = ps.peek(now)
        slot = ps.take_slot(now)
        assert slot == peeked
        assert slot >= now  # never before the request
        if slots:
            # exact, no tolerance: consecutive sends at least 60/rpm apart
            assert slot - slots[-1] >= 60.0 / rpm
            # and not slower than needed: the earliest allowed time, up to one grid tick
            assert slot - max(now, slots[-1] + ps.interval_s) <= GRID
        else:
            assert slot - now <= GRID
        slots.append(slot)
    assert slots == sorted(slots)
    # no 60-second window [t, t + 60) holds more than rpm slots; windows starting at a
    # slot are the fullest ones
    for j, start in enumerate(slots):
        assert bisect.bisect_left(slots, start + 60.0) - j <= rpm


@FAST
@given(rpm=st.integers(1, 100_000), start=clock, count=st.integers(1, 400))
def test_pacing_back_to_back_never_drifts(rpm: int, start: float, count: int) -> None:
    ps = PacingSchedule(rpm)
    assert 60.0 / rpm <= ps.interval_s < 60.0 / rpm + GRID
    slots = [ps.take_slot(start) for _ in range(count)]
    first = slots[0]
    assert slots == [first + k * ps.interval_s for k in range(count)]


@FAST
@given(times=st.lists(clock, min_size=1, max_size=50).map(sorted))
def test_pacing_disabled_is_transparent(times: list[float]) -> None:
    ps = PacingSchedule(0)
    assert [ps.take_slot(t) for t in times] == times
