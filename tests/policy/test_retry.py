"""Examples with exact numbers for the per-request cores: statuses, backoff, Retry-After."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from minimallm._policy import (
    OVERLOAD_STATUSES,
    RETRYABLE_STATUSES,
    backoff_bounds,
    backoff_delay,
    is_overload_status,
    is_retryable_status,
    parse_retry_after,
    retry_delay,
)

# --------------------------------------------------------------------------- statuses

# SPEC §3.4, row by row: (status, retried, feeds the cooldown)
STATUS_TABLE = [
    (408, True, False),
    (409, True, False),
    (425, True, False),
    (429, True, True),
    (500, True, False),
    (502, True, True),
    (503, True, True),
    (504, True, True),
    (400, False, False),
    (401, False, False),
    (403, False, False),
    (404, False, False),
    (413, False, False),
    (422, False, False),
    (501, False, False),
    (505, False, False),
]


@pytest.mark.parametrize(("status", "retried", "overload"), STATUS_TABLE)
def test_status_table(status: int, retried: bool, overload: bool) -> None:
    assert is_retryable_status(status) is retried
    assert is_overload_status(status) is overload


def test_status_sets_are_exactly_the_spec() -> None:
    assert frozenset({408, 409, 425, 429, 500, 502, 503, 504}) == RETRYABLE_STATUSES
    assert frozenset({429, 502, 503, 504}) == OVERLOAD_STATUSES
    assert OVERLOAD_STATUSES <= RETRYABLE_STATUSES


# --------------------------------------------------------------------------- backoff

DEFAULTS = {"base_s": 0.5, "max_s": 20.0}


@pytest.mark.parametrize(
    ("failed_attempt", "expected"),
    [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 8.0), (6, 16.0), (7, 20.0), (8, 20.0)],
)
def test_backoff_without_jitter_doubles_up_to_max(failed_attempt: int, expected: float) -> None:
    rng = random.Random(0)
    delay = backoff_delay(failed_attempt, jitter=0.0, rng=rng, **DEFAULTS)
    assert delay == expected
    assert backoff_bounds(failed_attempt, jitter=0.0, **DEFAULTS) == (expected, expected)


def test_backoff_without_jitter_does_not_consume_randomness() -> None:
    rng = random.Random(7)
    backoff_delay(3, jitter=0.0, rng=rng, **DEFAULTS)
    assert rng.random() == random.Random(7).random()


@pytest.mark.parametrize(
    ("failed_attempt", "bounds"),
    [
        (1, (0.4, 0.6)),
        (3, (1.6, 2.4000000000000004)),
        (6, (12.8, 19.2)),
        # d = 20 = max_s: the upper end is clipped to max_s, the lower end keeps the spread
        (7, (16.0, 20.0)),
    ],
)
def test_backoff_bounds_with_jitter(failed_attempt: int, bounds: tuple[float, float]) -> None:
    assert backoff_bounds(failed_attempt, jitter=0.2, **DEFAULTS) == pytest.approx(bounds)
    low, high = backoff_bounds(failed_attempt, jitter=0.2, **DEFAULTS)
    assert high <= 20.0
    rng = random.Random(failed_attempt)
    for _ in range(200):
        assert low <= backoff_delay(failed_attempt, jitter=0.2, rng=rng, **DEFAULTS) <= high


def test_backoff_jitter_spreads_at_the_cap() -> None:
    rng = random.Random(3)
    delays = {backoff_delay(50, jitter=0.2, rng=rng, **DEFAULTS) for _ in range(100)}
    assert len(delays) == 100  # no pile-up on exactly max_s
    assert min(delays) >= 16.0
    assert max(delays) <= 20.0


def test_backoff_is_deterministic_for_a_seed() -> None:
    a = [backoff_delay(n, jitter=0.5, rng=random.Random(42), **DEFAULTS) for n in range(1, 9)]
    b = [backoff_delay(n, jitter=0.5, rng=random.Random(42), **DEFAULTS) for n in range(1, 9)]
    assert a == b


@pytest.mark.parametrize("failed_attempt", [1_100, 2_101, 10_000, 10**12])
def test_backoff_huge_attempt_numbers_do_not_overflow(failed_attempt: int) -> None:
    assert backoff_bounds(failed_attempt, jitter=0.0, **DEFAULTS) == (20.0, 20.0)
    # even the smallest positive float (2**-1074) reaches the cap: no premature clamp
    assert backoff_bounds(failed_attempt, base_s=5e-324, max_s=20.0, jitter=0.0) == (20.0, 20.0)
    assert backoff_bounds(failed_attempt, base_s=1e300, max_s=1e308, jitter=0.0) == (1e308, 1e308)


def test_backoff_exponent_is_not_clamped_early() -> None:
    assert backoff_bounds(1_024, base_s=5e-324, max_s=20.0, jitter=0.0) == (2.0**-51, 2.0**-51)


def test_backoff_zero_base_is_zero() -> None:
    assert backoff_delay(10, base_s=0.0, max_s=20.0, jitter=0.2, rng=random.Random(0)) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"failed_attempt": 0},
        {"base_s": -1.0},
        {"base_s": math.nan},
        {"max_s": math.inf},
        {"max_s": -0.5},
        {"jitter": 1.5},
        {"jitter": -0.1},
        {"jitter": math.nan},
    ],
)
def test_backoff_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    params: dict[str, float] = {"failed_attempt": 1, "base_s": 0.5, "max_s": 20.0, "jitter": 0.2}
    params.update(kwargs)
    n = int(params.pop("failed_attempt"))
    with pytest.raises(ValueError):
        backoff_bounds(n, **params)
    with pytest.raises(ValueError):
        backoff_delay(n, rng=random.Random(0), **params)


# --------------------------------------------------------------------------- Retry-After

NOW_WALL = 1_700_000_000.0  # 2023-11-14T22:13:20Z


def _http_date(unix_s: float) -> str:
    return format_datetime(datetime.fromtimestamp(unix_s, UTC), usegmt=True)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": " 7 "}, 7.0),
        ({"retry-after": "2.5"}, 2.5),
        ({"retry-after": ".5"}, 0.5),
        ({"retry-after": "1e1"}, 10.0),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": "86400"}, 86400.0),  # not capped here; retry_delay caps
        ({"retry-after": _http_date(NOW_WALL + 42)}, 42.0),
        ({"retry-after": _http_date(NOW_WALL - 42)}, 0.0),
        ({"retry-after": "Tue, 14 Nov 2023 22:14:00 GMT"}, 40.0),
        # "-0000": UTC of unknown origin, must not be read as local time
        ({"retry-after": "Tue, 14 Nov 2023 22:14:00 -0000"}, 40.0),
        ({"retry-after": "Tue, 14 Nov 2023 23:14:00 +0100"}, 40.0),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250.5"}, 0.2505),
        ({"retry-after-ms": "-10"}, 0.0),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "soon", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "soon"}, None),
        ({"retry-after": "5s"}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "NaN"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "-inf"}, None),
        ({"retry-after": "1e999"}, None),
        ({"retry-after": "0x10"}, None),
        ({"retry-after": "Wed, 32 Oct 2015 07:28:00 GMT"}, None),
        ({"retry-after": "21 Oct 99999 07:28:00 GMT"}, None),
        ({"Retry-After": "3"}, None),  # keys are expected lower-case
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    got = parse_retry_after(headers, now_wall=NOW_WALL)
    if expected is None:
        assert got is None
    else:
        assert got == pytest.approx(expected)


@pytest.fixture
def far_from_utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Run with a local time zone 5 hours off UTC, so naive-local mistakes show."""
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is POSIX-only")
    monkeypatch.setenv("TZ", "EST+05")
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("far_from_utc")
def test_parse_retry_after_minus_zero_zone_is_utc_not_local_time() -> None:
    assert time.timezone == 5 * 3600
    header = {"retry-after": "Tue, 14 Nov 2023 22:14:00 -0000"}
    assert parse_retry_after(header, now_wall=NOW_WALL) == 40.0


def test_parse_retry_after_accepts_httpx_headers() -> None:
    httpx = pytest.importorskip(
        "httpx", reason="needs httpx (the [test] extra) for its Headers type"
    )
    headers = httpx.Headers({"Retry-After": "3", "Retry-After-Ms": "120"})
    assert parse_retry_after(headers, now_wall=NOW_WALL) == pytest.approx(0.12)


@pytest.mark.parametrize(
    ("retry_after_s", "expected"),
    [
        (None, 2.0),  # backoff for failed attempt 3 without jitter
        (0.0, 0.0),
        (5.0, 5.0),
        (25.0, 25.0),  # above max_s (20) is allowed: the server knows best ...
        (30.0, 30.0),
        (3600.0, 30.0),  # ... but never above cap_s
        (math.inf, 30.0),
        (-1.0, 0.0),
    ],
)
def test_retry_delay(retry_after_s: float | None, expected: float) -> None:
    delay = retry_delay(3, retry_after_s, jitter=0.0, cap_s=30.0, rng=random.Random(0), **DEFAULTS)
    assert delay == expected


def test_retry_delay_uses_jittered_backoff_without_retry_after() -> None:
    a = retry_delay(4, None, jitter=0.2, cap_s=30.0, rng=random.Random(9), **DEFAULTS)
    b = backoff_delay(4, jitter=0.2, rng=random.Random(9), **DEFAULTS)
    assert a == b
    assert a != 4.0
