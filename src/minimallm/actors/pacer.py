"""Pacer: RPM pacing on absolute deadlines. The schedule is the pure
:class:`~minimallm._pacing.PacingSchedule`; this part of the Admission actor only
says from when the next send may go, and spends a slot when one does.

A slot is taken only at the moment an attempt is admitted, i.e. when it can go out
at once (it already holds a Worker and the cooldown is over): sends keep the paced
spacing on the wire. Admission happens at ``now >= not_before``, where
``not_before`` is the previous slot plus the interval, exactly (both are on the
schedule's 2**-20 s grid): so the spacing between two admissions is at least
``interval_s >= 60 / rpm`` even though the slot itself is ``now`` rounded up to the
grid.
"""

from __future__ import annotations

import math

from minimallm._policy import PacingSchedule

__all__ = ["Pacer"]


class Pacer:
    """When the next send may go. Owned by the Admission actor."""

    __slots__ = ("_schedule", "not_before", "sent")

    def __init__(self, schedule: PacingSchedule) -> None:
        self._schedule = schedule
        self.not_before = -math.inf
        """Trio time (seconds) from which the next send may go (``-inf`` without RPM)."""
        self.sent = 0

    def __repr__(self) -> str:
        return f"<Pacer {self._schedule!r} sent={self.sent}>"

    def take(self, now: float) -> None:
        """Spend the slot at ``now`` (callers check ``now >= not_before`` first)."""
        self.sent += 1
        if self._schedule.rpm:
            self.not_before = self._schedule.take_slot(now) + self._schedule.interval_s
