"""Pure pacing core: RPM limiting on an exact tick grid, slots on absolute deadlines.

:class:`PacingSchedule` hands out send times at least ``60 / rpm`` seconds apart; the
actor in :mod:`minimallm.actors.pacer` wraps it and only sleeps until each slot. Like
every core in :mod:`minimallm._policy` (which re-exports it), nothing here does I/O,
sleeps, reads a clock or imports trio: the caller passes ``now`` in seconds on its own
clock.
"""

from __future__ import annotations

import math

__all__ = ["PacingSchedule"]

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
