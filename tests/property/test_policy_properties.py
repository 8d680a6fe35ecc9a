"""Invariants of the per-request cores (backoff, Retry-After), checked with hypothesis."""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime
from email.utils import format_datetime
from fractions import Fraction

from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm._policy import (
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
    if 0.0 <= retry_after_s <= cap_s:  # never earlier than asked; later by the jitter at most
        assert retry_after_s <= delay <= min(cap_s, retry_after_s * (1.0 + jitter))
    if jitter == 0.0:
        assert delay == min(cap_s, max(0.0, retry_after_s))


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
