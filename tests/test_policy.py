"""Examples with exact numbers for the pure decision cores in minimallm._policy."""

from __future__ import annotations

import ast
import math
import random
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from types import ModuleType

import pytest

import minimallm._cooldown as cooldown_module
import minimallm._pacing as pacing_module
import minimallm._policy as policy_module
from minimallm._policy import (
    OVERLOAD_STATUSES,
    RETRYABLE_STATUSES,
    CooldownState,
    PacingSchedule,
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
    httpx = pytest.importorskip("httpx")
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


# --------------------------------------------------------------------------- cooldown


def _cooldown(**overrides: float) -> CooldownState:
    params = {"floor_s": 0.0, "cap_s": 30.0, "halflife_s": 20.0, "initial_s": 0.5}
    params.update(overrides)
    return CooldownState(**params)


def test_cooldown_starts_open_on_any_clock() -> None:
    cd = _cooldown()
    assert cd.deadline() == -math.inf
    assert cd.remaining(0.0) == 0.0
    assert cd.remaining(-1e9) == 0.0
    assert cd.level(123.0) == 0.0


def test_cooldown_doubles_on_consecutive_overloads_up_to_cap() -> None:
    cd = _cooldown()
    deadlines = [cd.on_overload(100.0) for _ in range(9)]
    assert deadlines == [100.5, 101.0, 102.0, 104.0, 108.0, 116.0, 130.0, 130.0, 130.0]
    assert cd.level(100.0) == 30.0
    assert cd.remaining(100.0) == 30.0
    assert cd.remaining(129.0) == 1.0
    assert cd.remaining(130.0) == 0.0
    assert cd.remaining(1000.0) == 0.0


def test_cooldown_decays_with_half_life() -> None:
    cd = _cooldown()
    for _ in range(4):
        cd.on_overload(0.0)
    assert cd.level(0.0) == 4.0
    assert cd.level(20.0) == 2.0
    assert cd.level(40.0) == 1.0
    assert cd.level(60.0) == 0.5
    assert cd.remaining(4.0) == 0.0  # the gate opened long before the level decayed
    # next overload at t=40 doubles the decayed level 1.0, not the old 4.0
    assert cd.on_overload(40.0) == 42.0
    assert cd.level(40.0) == 2.0


def test_cooldown_falls_back_to_initial_after_long_quiet() -> None:
    cd = _cooldown()
    for _ in range(9):
        cd.on_overload(0.0)
    # after 10 half-lives 30 s decays to ~0.03 s; doubling gives 0.06 < initial 0.5
    assert cd.on_overload(200.0) == 200.5


def test_cooldown_floor_and_cap() -> None:
    cd = _cooldown(floor_s=3.0, cap_s=5.0)
    assert cd.on_overload(0.0) == 3.0
    assert cd.on_overload(0.0) == 5.0  # 6 capped to 5
    cd = _cooldown(floor_s=10.0, cap_s=5.0, initial_s=8.0)
    assert cd.on_overload(0.0) == 5.0  # cap wins over floor and initial


def test_cooldown_retry_after_moves_the_deadline_not_the_level() -> None:
    cd = _cooldown()
    assert cd.on_overload(10.0, retry_after_s=7.0) == 17.0
    assert cd.level(10.0) == 0.5  # the server's word about now, not our escalation
    cd = _cooldown()
    assert cd.on_overload(10.0, retry_after_s=3600.0) == 40.0  # capped at cap_s = 30


def test_cooldown_deadline_never_moves_back() -> None:
    cd = _cooldown()
    cd.on_overload(0.0, retry_after_s=30.0)
    assert cd.on_overload(25.0) == 30.0  # the new level (1 s) would end earlier
    cd = _cooldown(halflife_s=0.0)
    assert cd.on_overload(0.0, retry_after_s=20.0) == 20.0
    # half-life 0 forgot the level: the new level is initial_s, but the deadline stays
    assert cd.on_overload(1.0) == 20.0
    assert cd.level(1.0) == 0.5


def test_cooldown_grows_once_per_episode() -> None:
    """Attempts already in flight when the cooldown began do not grow it again."""
    cd = _cooldown(halflife_s=math.inf)
    assert cd.on_overload(10.0, sent_at=9.0) == 10.5
    for _ in range(63):  # the other 63 attempts sent before t=10 answer 429 too
        assert cd.on_overload(10.2, sent_at=9.5) == 10.5
    assert cd.level(10.2) == 0.5
    # an attempt sent after the cooldown began still meets overload: the pause was too short
    assert cd.on_overload(11.0, sent_at=10.6) == 12.0
    assert cd.level(11.0) == 1.0


def test_cooldown_zero_halflife_keeps_level_at_same_instant() -> None:
    cd = _cooldown(halflife_s=0.0)
    cd.on_overload(5.0)
    assert cd.level(5.0) == 0.5
    assert cd.on_overload(5.0) == 6.0
    assert cd.level(5.000001) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor_s": -1.0},
        {"cap_s": math.nan},
        {"cap_s": math.inf},
        {"halflife_s": -1.0},
        {"initial_s": math.inf},
    ],
)
def test_cooldown_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        _cooldown(**kwargs)


def test_cooldown_repr_shows_live_state() -> None:
    cd = _cooldown()
    cd.on_overload(2.0)
    text = repr(cd)
    assert "level=0.500s" in text
    assert "deadline=2.500" in text
    assert "cap_s=30.0" in text


# --------------------------------------------------------------------------- pacing


def test_pacing_disabled_returns_now() -> None:
    ps = PacingSchedule(0)
    assert ps.interval_s == 0.0
    assert [ps.take_slot(1.23456789) for _ in range(3)] == [1.23456789] * 3
    assert ps.peek(0.3) == 0.3


def test_pacing_back_to_back_on_exact_grid() -> None:
    ps = PacingSchedule(60)
    assert ps.interval_s == 1.0
    assert [ps.take_slot(0.0) for _ in range(4)] == [0.0, 1.0, 2.0, 3.0]
    assert ps.peek(0.5) == 4.0
    assert ps.peek(0.5) == 4.0  # peek reserves nothing
    assert ps.take_slot(3.5) == 4.0


def test_pacing_interval_rounds_up_to_the_grid() -> None:
    ps = PacingSchedule(600)
    assert ps.interval_s == 104858 / 2**20  # ceil(60 * 2**20 / 600) ticks
    assert 0.1 <= ps.interval_s < 0.1 + 1e-6
    slots = [ps.take_slot(0.0) for _ in range(601)]
    assert slots[600] == 600 * ps.interval_s
    assert slots[600] >= 60.0  # 601 slots never fit into 60 s


def test_pacing_reanchors_after_idle_gap_without_burst() -> None:
    ps = PacingSchedule(120)  # interval 0.5 s
    assert ps.take_slot(10.0) == 10.0
    assert ps.take_slot(10.0) == 10.5
    # idle: the unused slots between 11 and 100 are not banked
    assert ps.take_slot(100.0) == 100.0
    assert ps.take_slot(100.0) == 100.5
    assert ps.take_slot(100.2) == 101.0
    # arriving exactly at the next free slot
    assert ps.take_slot(101.5) == 101.5


def test_pacing_slot_is_never_before_now() -> None:
    ps = PacingSchedule(600)
    now = 12345.678901234
    slot = ps.take_slot(now)
    assert now <= slot < now + 1e-6
    assert ps.take_slot(now) - slot == ps.interval_s


def test_pacing_rejects_negative_rpm() -> None:
    with pytest.raises(ValueError):
        PacingSchedule(-5)


def test_pacing_repr_shows_live_state() -> None:
    ps = PacingSchedule(60)
    assert "next_free=now" in repr(ps)
    ps.take_slot(3.0)
    assert "rpm=60" in repr(ps)
    assert "next_free=4.000000" in repr(ps)


CORE_MODULES = [policy_module, cooldown_module, pacing_module]
CORE_NAMES = {module.__name__ for module in CORE_MODULES}


@pytest.mark.parametrize("module", CORE_MODULES, ids=lambda module: module.__name__)
def test_policy_module_is_sans_io(module: ModuleType) -> None:
    """The cores import only pure stdlib modules (and each other): no trio, httpx, time or I/O."""
    assert module.__file__ is not None
    source = Path(module.__file__).read_text(encoding="utf-8")
    imported: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module in CORE_NAMES:
            imported.add(node.module)  # a sibling core, itself checked here
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    stdlib = {"__future__", "collections", "datetime", "email", "math", "random", "re"}
    assert imported <= stdlib | CORE_NAMES
