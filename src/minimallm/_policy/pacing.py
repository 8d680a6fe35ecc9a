"""Send times on an absolute schedule: the RPM cap and any slower learned rate, no drift.

:class:`PacingSchedule` answers "from when may the next attempt go" (:meth:`peek`) and
records a send (:meth:`take`). The Pacer actor sleeps until that time and then lets one
waiting attempt go. Like every core in :mod:`minimallm._policy`, nothing here does I/O,
sleeps, reads a clock or imports trio: ``now`` is passed in, seconds.
"""

from __future__ import annotations

import math
from array import array

__all__ = ["MAX_RING", "PacingSchedule"]

# Slots live on a grid of 2**-20 s (~0.95 us) counted in Python ints: grid values below
# 2**33 s (~272 years of clock) are exact floats, so sums never drift and the spacing and
# per-minute guarantees hold exactly in float arithmetic, not merely "up to rounding".
_GRID_BITS = 20
_MINUTE_TICKS = 60 << _GRID_BITS


def _ticks_up(seconds: float) -> int:
    return math.ceil(math.ldexp(seconds, _GRID_BITS))


def _seconds(ticks: int) -> float:
    return math.ldexp(ticks, -_GRID_BITS)


MAX_RING = 16_384
"""The most send times a schedule keeps (8 bytes each: 128 KiB), whatever the RPM."""


def _ring_shape(rpm: int, max_ring: int) -> tuple[int, int]:
    """``(size, span)``: keep the last ``size`` send ticks and hold a send until ``span``
    ticks after the send ``size`` places before it. ``rpm <= max_ring``: ``(rpm, one
    minute)``, the exact sliding window itself. Above: ``size`` K in
    ``[max_ring // 2, max_ring]`` losing the fewest sends per minute (``rpm % K``, none
    when K divides ``rpm``; with ``j = ceil(rpm / max_ring)``, K = ``rpm // j`` is in that
    range and loses fewer than ``j``, so the loss is under ``rpm / max_ring``), and
    ``span`` a ``j``-th of a minute where ``j = rpm // K``."""
    if rpm <= max_ring:
        return rpm, _MINUTE_TICKS
    size = min(range(max_ring, max(1, max_ring // 2) - 1, -1), key=lambda k: rpm % k)
    return size, -(-_MINUTE_TICKS // (rpm // size))


class PacingSchedule:
    """Slots at least ``step`` apart on an absolute grid, and at most ``rpm`` sends in
    any 60 seconds. Internally every time is an integer number of ticks of 2**-20 s::

        step   = max(ceil(60 * 2**20 / rpm), ceil(interval_s * 2**20))     ticks
        slot_k = slot_{k-1} + step          while the schedule keeps up
        slot   = now                        after an idle gap of a whole step or more

    *No drift*: a send that was waiting for its slot and went out late (the wake-up came
    late: ``waited=True``) does not push the slots after it back; the grid stays where
    it was, so the rate over a run is the rate asked for however late individual
    wake-ups are. A send that was not waiting when its slot came (the schedule was
    idle) re-anchors the grid at ``now``: unused slots are not banked, so there is no
    burst after a pause and consecutive sends keep their spacing.

    *The RPM cap is exact, in bounded memory*: a send never goes out less than 60 s
    after the send ``rpm`` places before it, so no 60-second window, however placed,
    holds more than ``rpm`` sends, even when late wake-ups bunch sends together. Up to
    ``max_ring`` RPM (default :data:`MAX_RING`) that is checked directly on a ring of the
    last ``rpm`` send times. Above, the ring keeps the last K send times (K between
    ``max_ring // 2`` and ``max_ring``, chosen so that ``j = rpm // K`` loses the fewest
    sends: ``j * K <= rpm``) and a send waits until a ``j``-th of a minute after the
    send K places before it; chained ``j`` times, send ``k`` goes at least 60 s after
    send ``k - j*K``, which is no earlier than send ``k - rpm``: the same exact cap, in
    at most 128 KiB whatever the RPM (the full ring took 8 bytes per RPM: 48 MB at
    6,000,000). The price: at most ``rpm % K`` fewer sends per minute (under
    ``rpm / max_ring``, 0.006 %; none when K divides ``rpm``, as for 6,000,000 =
    375 * 16,000), and a late wake-up that the ring holds back is carried into the
    next ``1/j`` of a minute instead of the next minute. Without lateness (or in virtual
    time) consecutive sends are at least ``60 / rpm`` s apart.

    ``interval_s`` (a learned rate's spacing, seconds) may be passed to :meth:`peek`
    and :meth:`take`; the larger of it and the RPM spacing applies. ``rpm == 0`` with no
    interval disables pacing: every slot is ``now``.
    """

    __slots__ = ("_count", "_next_tick", "_ring", "_ring_size", "_rpm", "_rpm_ticks", "_span")

    def __init__(self, rpm: int, *, max_ring: int = MAX_RING) -> None:
        if rpm < 0:
            raise ValueError(f"rpm must be >= 0 (0 disables pacing), got {rpm!r}")
        if max_ring < 1:
            raise ValueError(f"max_ring must be >= 1 (send times kept), got {max_ring!r}")
        self._rpm = rpm
        self._rpm_ticks = -(-_MINUTE_TICKS // rpm) if rpm else 0
        self._ring_size, self._span = _ring_shape(rpm, max_ring) if rpm else (0, 0)
        self._next_tick: int | None = None
        self._ring: array[int] | None = None  # send ticks of the last `_ring_size` sends
        self._count = 0

    @property
    def rpm(self) -> int:
        """Requests per minute this schedule allows; 0 means no RPM cap."""
        return self._rpm

    @property
    def interval_s(self) -> float:
        """The RPM spacing in seconds (``>= 60 / rpm``); 0.0 without an RPM cap."""
        return _seconds(self._rpm_ticks)

    def _step(self, interval_s: float | None) -> int:
        if interval_s is None or interval_s <= 0:
            return self._rpm_ticks
        return max(self._rpm_ticks, _ticks_up(interval_s))

    def _earliest(self, now_tick: int, step: int) -> int:
        tick = now_tick
        nxt = self._next_tick
        if nxt is not None and now_tick <= nxt:
            tick = nxt  # the next slot on the grid has not passed yet
        if self._ring is not None and self._count >= self._ring_size:
            oldest = self._ring[self._count % self._ring_size]
            tick = max(tick, oldest + self._span)
        return tick

    def peek(self, now: float, interval_s: float | None = None) -> float:
        """The earliest time (seconds, ``>= now``) the next send may go: ``now`` itself
        (unrounded) when nothing holds it back."""
        step = self._step(interval_s)
        if not step:
            return now
        now_tick = _ticks_up(now)
        tick = self._earliest(now_tick, step)
        nxt = self._next_tick
        if tick == now_tick and (nxt is None or now_tick > nxt):
            return now  # the grid's slot passed while nobody waited: now is fine
        return _seconds(tick)

    def take(self, now: float, interval_s: float | None = None, *, waited: bool = False) -> float:
        """Record a send at ``now`` (which must be ``>= peek(now)``); returns its slot on
        the grid (seconds, ``<= now``). ``waited``: the send was waiting for this slot
        (so any lateness is the wake-up's, and the grid is kept)."""
        step = self._step(interval_s)
        if not step:
            return now
        now_tick = _ticks_up(now)
        if now < self.peek(now, interval_s):
            raise ValueError(f"take({now!r}) before the slot peek() gives")
        nxt = self._next_tick
        # a late wake-up (by less than a step) keeps the grid; otherwise re-anchor at now
        # (idle: nothing banked)
        keep = nxt is not None and waited and now_tick < nxt + step
        slot = nxt if keep and nxt is not None else now_tick
        self._next_tick = slot + step
        if self._rpm:
            if self._ring is None:
                self._ring = array("q", bytes(8 * self._ring_size))
            self._ring[self._count % self._ring_size] = now_tick
            self._count += 1
        return _seconds(slot)

    def __repr__(self) -> str:
        nxt = "now" if self._next_tick is None else f"{_seconds(self._next_tick):.6f}"
        return f"<PacingSchedule rpm={self._rpm} interval_s={self.interval_s:.7f} next={nxt}>"
