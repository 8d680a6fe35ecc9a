"""Pure decision cores: retry classification, backoff, Retry-After, cooldown, pacing.

Nothing here does I/O, sleeps, reads a clock or imports trio. Every function that
depends on time takes ``now`` (seconds, on whatever clock the caller uses) as an
argument, and every random choice comes from an injected :class:`random.Random`, so
the actors that wrap these cores stay thin and the cores are tested exhaustively
(``tests/test_policy.py``, ``tests/property/test_policy_properties.py``).

Vocabulary (used the same way everywhere in minimallm):

- *attempt* ``n`` is 1-based; the *failed attempt* is the one that just failed, and the
  delay computed from it is waited before attempt ``n + 1``.
- *backoff* is the computed delay; a server's *Retry-After* replaces it.
- *overload* is a 429/502/503/504 answer; it feeds the shared *cooldown*, a deadline
  before which no attempt is sent.
- *pacing* spaces sends at least ``60 / rpm`` seconds apart.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = [
    "OVERLOAD_STATUSES",
    "RETRYABLE_STATUSES",
    "CooldownState",
    "PacingSchedule",
    "backoff_bounds",
    "backoff_delay",
    "is_overload_status",
    "is_retryable_status",
    "parse_retry_after",
    "retry_delay",
]

# --------------------------------------------------------------------------- statuses

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
"""HTTP statuses retried with backoff (SPEC §3.4). Exactly this table: every other
non-2xx status (400, 401, 403, 404, 413, 422, but also 501 and 505, which no retry
can fix) is a final failure."""

OVERLOAD_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
"""HTTP statuses that say the *server* (not this request) is overloaded; besides being
retried they feed the shared cooldown so that every worker backs off together."""


def is_retryable_status(status: int) -> bool:
    """Whether a non-2xx HTTP ``status`` is worth another attempt.

    True exactly for :data:`RETRYABLE_STATUSES` (408, 409, 425, 429, 500, 502, 503,
    504). A 2xx never reaches this question (its body decides); any other status,
    including 5xx outside the table such as 501 Not Implemented or 505, is final.
    """
    return status in RETRYABLE_STATUSES


def is_overload_status(status: int) -> bool:
    """Whether ``status`` signals server overload and must extend the shared cooldown.

    True exactly for :data:`OVERLOAD_STATUSES` (429, 502, 503, 504), a subset of the
    retryable statuses.
    """
    return status in OVERLOAD_STATUSES


# --------------------------------------------------------------------------- backoff

# Beyond this many doublings even the smallest positive float (2**-1074) exceeds the
# largest one (< 2**1024), so every larger attempt number gives the same answer.
_MAX_DOUBLINGS = 2100


def _check_backoff_params(failed_attempt: int, base_s: float, max_s: float, jitter: float) -> None:
    if failed_attempt < 1:
        raise ValueError(
            f"failed_attempt must be >= 1 (attempts are 1-based), got {failed_attempt}"
        )
    if not (0.0 <= base_s < math.inf):
        raise ValueError(f"base_s must be a finite number >= 0 seconds, got {base_s!r}")
    if not (0.0 <= max_s < math.inf):
        raise ValueError(f"max_s must be a finite number >= 0 seconds, got {max_s!r}")
    if not (0.0 <= jitter <= 1.0):
        raise ValueError(f"jitter must be between 0 and 1, got {jitter!r}")


def _nominal_backoff(failed_attempt: int, base_s: float, max_s: float) -> float:
    """``min(max_s, base_s * 2**(n-1))`` without overflow for any ``n``."""
    doublings = min(failed_attempt - 1, _MAX_DOUBLINGS)
    try:
        raw = math.ldexp(base_s, doublings)
    except OverflowError:
        return max_s
    return min(max_s, raw)


def backoff_bounds(
    failed_attempt: int, *, base_s: float, max_s: float, jitter: float
) -> tuple[float, float]:
    """The interval ``(low, high)`` in seconds that :func:`backoff_delay` draws from.

    With ``n = failed_attempt`` (1-based)::

        d    = min(max_s, base_s * 2**(n - 1))
        low  = d * (1 - jitter)
        high = min(max_s, d * (1 + jitter))

    so ``0 <= low <= high <= max_s``. The exponent is clamped internally, so a huge
    ``n`` (``MAX_ATTEMPTS=0`` retries forever) simply gives ``d = max_s``.

    Raises ValueError for ``n < 1``, a negative or non-finite ``base_s``/``max_s``, or
    ``jitter`` outside ``[0, 1]``.
    """
    _check_backoff_params(failed_attempt, base_s, max_s, jitter)
    d = _nominal_backoff(failed_attempt, base_s, max_s)
    return d * (1.0 - jitter), min(max_s, d * (1.0 + jitter))


def backoff_delay(
    failed_attempt: int, *, base_s: float, max_s: float, jitter: float, rng: random.Random
) -> float:
    """Seconds to wait before attempt ``n + 1`` after attempt ``n = failed_attempt`` failed.

    Uniform in :func:`backoff_bounds`::

        d     = min(max_s, base_s * 2**(n - 1))
        delay ~ Uniform(d * (1 - jitter), min(max_s, d * (1 + jitter)))

    The upper end is clipped *before* drawing rather than clamping the draw afterwards,
    so delays at the cap stay spread out instead of piling up exactly on ``max_s``
    (which would re-synchronise the retries jitter is meant to scatter). The result is
    never negative and never above ``max_s``. ``rng`` supplies the randomness (seed it
    in tests); with ``jitter=0`` it is not consulted.
    """
    low, high = backoff_bounds(failed_attempt, base_s=base_s, max_s=max_s, jitter=jitter)
    if low == high:
        return low
    # uniform() computes low + (high - low) * r, which may round a hair past high.
    return min(high, max(low, rng.uniform(low, high)))


# --------------------------------------------------------------------------- Retry-After

_NUMBER = re.compile(r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*")


def _parse_seconds(value: str) -> float | None:
    """A decimal number of seconds, negative clamped to 0; None if not a finite number."""
    if _NUMBER.fullmatch(value) is None:
        return None
    seconds = float(value)
    if not math.isfinite(seconds):  # e.g. "1e999"
        return None
    return max(0.0, seconds)


def _parse_http_date(value: str, now_wall: float) -> float | None:
    """Seconds from ``now_wall`` until an HTTP date, negative clamped to 0; None if invalid."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown origin (RFC 5322)
        when = when.replace(tzinfo=UTC)
    try:
        delta = when.timestamp() - now_wall
    except (OverflowError, ValueError):
        return None
    return max(0.0, delta) if math.isfinite(delta) else None


def parse_retry_after(headers: Mapping[str, str], *, now_wall: float) -> float | None:
    """How long (seconds) the server asked us to wait, or None if it did not say.

    ``headers`` is looked up with lower-case keys (a plain dict with lower-case keys or
    an ``httpx.Headers``). Precedence:

    1. ``retry-after-ms``: a number of milliseconds (``"1500"``, ``"250.5"``) → ``ms/1000``;
       if it is not a valid number it is ignored and ``retry-after`` is tried.
    2. ``retry-after``: a number of seconds (``"3"``, ``"2.5"``) or an HTTP date
       (``"Wed, 21 Oct 2015 07:28:00 GMT"``), the latter converted to a delay relative
       to ``now_wall`` (Unix seconds, i.e. ``time.time()``).

    A negative delay or a date in the past gives ``0.0`` (retry now); garbage, NaN and
    infinities give None. The result is not capped here: :func:`retry_delay` caps it.
    """
    ms = headers.get("retry-after-ms")
    if ms is not None:
        ms_value = _parse_seconds(ms)
        if ms_value is not None:
            return ms_value / 1000.0
    value = headers.get("retry-after")
    if value is None:
        return None
    seconds = _parse_seconds(value)
    if seconds is not None:
        return seconds
    return _parse_http_date(value, now_wall)


def retry_delay(
    failed_attempt: int,
    retry_after_s: float | None,
    *,
    base_s: float,
    max_s: float,
    jitter: float,
    cap_s: float,
    rng: random.Random,
) -> float:
    """Seconds to wait before the next attempt, honouring the server if it said so.

    ::

        retry_after_s given:  delay = min(cap_s, max(0, retry_after_s))
        otherwise:            delay = backoff_delay(failed_attempt, ...)

    ``cap_s`` is ``COOLDOWN_CAP_S``: a server asking for an hour does not stall a batch
    for an hour. A Retry-After may exceed ``max_s`` (the server knows best) but never
    ``cap_s``. ``rng`` is only consulted for the computed backoff.
    """
    if retry_after_s is not None:
        return min(cap_s, max(0.0, retry_after_s))
    return backoff_delay(failed_attempt, base_s=base_s, max_s=max_s, jitter=jitter, rng=rng)


# --------------------------------------------------------------------------- cooldown


def _check_seconds(name: str, value: float, *, allow_inf: bool = False) -> None:
    if not (value >= 0.0 and (allow_inf or math.isfinite(value))):  # also rejects NaN
        kind = "number" if allow_inf else "finite number"
        raise ValueError(f"{name} must be a {kind} >= 0 seconds, got {value!r}")


class CooldownState:
    """Shared back-off after overload (429/502/503/504): a deadline that expires.

    The state is a cooldown *level* ``L`` (seconds) stamped at time ``t0``, which decays
    with half-life ``halflife_s``, and a *deadline* before which the gate is closed::

        level(now) = L * 0.5 ** ((now - t0) / halflife_s)

    On an overload at ``now`` for an attempt sent at ``sent`` (optionally with the
    server's Retry-After ``ra``)::

        if sent is None or sent > t0:                  # a new congestion episode
            L        = min(cap_s, max(floor_s, initial_s, 2 * level(now)))
            t0       = now
            deadline = max(deadline, now + L)
        if ra is given:
            deadline = max(deadline, now + min(ra, cap_s))

    An attempt sent before the last growth (``sent <= t0``) was already in flight when
    the cooldown began: its overload is the same episode, so 64 simultaneous 429s grow
    the level once, not 64 times (TCP reacts once per round trip for the same reason).
    A Retry-After moves the deadline but not the level: it is the server's word about
    now, not evidence that our own pauses are too short.

    Hence overloads that persist after a pause double the cooldown up to ``cap_s``;
    quiet periods let it decay back towards zero; the deadline never moves backwards;
    and the gate is
    open again (``remaining == 0``) at most ``cap_s`` after the last overload, unlike a
    tax that never reaches zero. ``floor_s`` may be 0; if ``floor_s`` or ``initial_s``
    exceed ``cap_s``, ``cap_s`` wins. ``halflife_s = 0`` forgets the level at once
    (every overload starts again from ``initial_s``); ``math.inf`` never forgets.

    Times are seconds on the caller's clock (``trio.current_time()``); nothing here
    reads a clock.
    """

    __slots__ = ("_cap_s", "_deadline", "_floor_s", "_halflife_s", "_initial_s", "_level", "_t0")

    def __init__(
        self, *, floor_s: float, cap_s: float, halflife_s: float, initial_s: float
    ) -> None:
        _check_seconds("floor_s", floor_s)
        _check_seconds("cap_s", cap_s)
        _check_seconds("halflife_s", halflife_s, allow_inf=True)
        _check_seconds("initial_s", initial_s)
        self._floor_s = floor_s
        self._cap_s = cap_s
        self._halflife_s = halflife_s
        self._initial_s = initial_s
        self._level = 0.0
        self._t0 = -math.inf
        self._deadline = -math.inf

    def level(self, now: float) -> float:
        """The current cooldown length in seconds, decayed to ``now`` (0 before any overload)."""
        if self._level == 0.0:
            return 0.0
        elapsed = max(0.0, now - self._t0)
        if elapsed == 0.0:
            return self._level
        if self._halflife_s == 0.0:
            return 0.0
        decay: float = 0.5 ** (elapsed / self._halflife_s)
        return self._level * decay

    def on_overload(
        self, now: float, retry_after_s: float | None = None, sent_at: float | None = None
    ) -> float:
        """Record an overload answer received at ``now``; return the new deadline (seconds).

        ``sent_at`` is when the overloaded attempt was sent (None: unknown, counts as a
        new episode); ``retry_after_s`` is the server's parsed Retry-After, if any: the
        gate stays closed at least ``min(retry_after_s, cap_s)`` from ``now``.
        """
        if sent_at is None or sent_at > self._t0:
            level = min(self._cap_s, max(self._floor_s, self._initial_s, 2.0 * self.level(now)))
            self._level = level
            self._t0 = now
            self._deadline = max(self._deadline, now + level)
        if retry_after_s is not None:
            self._deadline = max(self._deadline, now + min(retry_after_s, self._cap_s))
        return self._deadline

    def deadline(self) -> float:
        """The moment (seconds) the gate opens; closed while ``now < deadline()``.

        ``-inf`` before any overload, so the gate starts open on any clock.
        """
        return self._deadline

    def remaining(self, now: float) -> float:
        """Seconds until the gate opens, ``max(0, deadline - now)``."""
        return max(0.0, self._deadline - now)

    def __repr__(self) -> str:
        return (
            f"<CooldownState level={self._level:.3f}s at t0={self._t0:.3f}"
            f" deadline={self._deadline:.3f} floor_s={self._floor_s} cap_s={self._cap_s}"
            f" halflife_s={self._halflife_s} initial_s={self._initial_s}>"
        )


# --------------------------------------------------------------------------- pacing

# Slots live on a grid of 2**-20 s (~0.95 us) counted in Python ints: grid values below
# 2**33 s (~272 years of clock) are exact floats, so sums never drift and the spacing and
# per-minute guarantees hold exactly in float arithmetic, not merely "up to rounding".
_GRID_BITS = 20


class PacingSchedule:
    """RPM pacing on absolute deadlines: sends spaced at least ``60 / rpm`` s apart, no drift.

    Internally every time is an integer number of ticks of ``2**-20`` s::

        interval = ceil(60 * 2**20 / rpm) ticks        (>= 60 / rpm seconds)
        slot     = max(ceil(now * 2**20), next_free)   then next_free = slot + interval

    Guarantees, exact (no tolerance) while the clock reads below ``2**33`` seconds:

    - slots are non-decreasing, each ``>= now`` at the call that took it;
    - consecutive slots are at least ``interval_s >= 60 / rpm`` apart;
    - hence no 60-second window holds more than ``rpm`` slots;
    - back-to-back slots are ``first + k * interval`` from an integer count, so no
      error accumulates; after an idle gap the schedule re-anchors at ``now`` (unused
      slots are not banked, so there is no burst after a pause).

    The price of exactness: ``interval_s`` is ``60 / rpm`` rounded *up* to the grid (by
    less than a microsecond, e.g. 0.1000004 s for rpm=600), and a slot taken when idle
    is ``now`` rounded up by less than a microsecond. ``rpm == 0`` disables pacing:
    every slot is ``now`` itself.
    """

    __slots__ = ("_interval_ticks", "_next_tick", "_rpm")

    def __init__(self, rpm: int) -> None:
        if rpm < 0:
            raise ValueError(f"rpm must be >= 0 (0 disables pacing), got {rpm!r}")
        self._rpm = rpm
        self._interval_ticks = -(-(60 << _GRID_BITS) // rpm) if rpm else 0
        self._next_tick: int | None = None

    @property
    def rpm(self) -> int:
        """Requests per minute this schedule allows; 0 means pacing is disabled."""
        return self._rpm

    @property
    def interval_s(self) -> float:
        """Minimum spacing between slots in seconds (``>= 60 / rpm``); 0.0 when disabled."""
        return math.ldexp(self._interval_ticks, -_GRID_BITS)

    def _slot_tick(self, now: float) -> int:
        now_tick = math.ceil(math.ldexp(now, _GRID_BITS))
        if self._next_tick is None or now_tick >= self._next_tick:
            return now_tick
        return self._next_tick

    def peek(self, now: float) -> float:
        """The send time (seconds) :meth:`take_slot` would return at ``now``, not reserved."""
        if not self._rpm:
            return now
        return math.ldexp(self._slot_tick(now), -_GRID_BITS)

    def take_slot(self, now: float) -> float:
        """Reserve the next send time (seconds, ``>= now``) and return it.

        The caller sleeps until the returned time and then sends; the slot is spent
        whether or not it does, so take it only when the attempt can go out at once.
        """
        if not self._rpm:
            return now
        tick = self._slot_tick(now)
        self._next_tick = tick + self._interval_ticks
        return math.ldexp(tick, -_GRID_BITS)

    def __repr__(self) -> str:
        if self._next_tick is None:
            next_free = "now"
        else:
            next_free = f"{math.ldexp(self._next_tick, -_GRID_BITS):.6f}"
        return (
            f"<PacingSchedule rpm={self._rpm} interval_s={self.interval_s:.7f}"
            f" next_free={next_free}>"
        )
