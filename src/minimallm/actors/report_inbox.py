"""ReportInbox: the Limiter's inbox, where every Worker's attempt report goes.

Every attempt's report passes through it, so it is cut down to what this inbox needs,
as :class:`~minimallm.actors.jobs.JobQueue` is for jobs:

- no exception on the common paths: trio's channel raises ``WouldBlock`` when the
  Limiter finds its inbox empty (~4k instructions each, two or three per wake-up);
- a *calm* report (a success whose Worker kept its permit: it changes no permit, and
  the Limiter's cores only count it) wakes a waiting Limiter only once ``linger`` of
  them are waiting. The Limiter sets ``linger`` from the permits out (one in eight of
  them: with 64 out, a wake-up per 8 answers instead of nearly one per answer). Any
  other report (a refusal, a failure, a timeout, a permit coming back) wakes it at
  once, and it reads the calm ones before it, in the order they came. The Limiter's
  own deadline (:meth:`burst`) takes whatever waits. When traffic stops, up to
  ``linger`` - 1 calm reports may wait unread until the next report: they change no
  permit, only what the Limiter's cores have counted.

Bounded like the channel it replaces: :meth:`send_nowait` raises ``trio.WouldBlock``
when ``size`` reports wait (the Limiter is behind), and :meth:`send` waits for room.
"""

from __future__ import annotations

import math

import trio

from minimallm.actors.messages import AttemptReport

__all__ = ["ReportInbox"]


class ReportInbox:
    """The Limiter's inbox (see the module docstring)."""

    __slots__ = ("_calm", "_closed", "_reports", "_room", "_size", "_waiting", "linger")

    def __init__(self, size: int) -> None:
        self._reports: list[AttemptReport] = []
        self._size = size
        self._waiting: trio.lowlevel.Task | None = None  # the Limiter, parked in burst()
        self._calm = 0  # calm reports come since it parked
        self._room = trio.lowlevel.ParkingLot()  # senders waiting for room
        self._closed = False
        self.linger = 1
        """Calm reports that wake a waiting Limiter (1: each one; written by it)."""

    def __repr__(self) -> str:
        return f"<ReportInbox {len(self._reports)}/{self._size} linger={self.linger}>"

    def send_nowait(self, report: AttemptReport) -> None:
        """Queue ``report``; wake the Limiter if it waits and this one (or the calm ones
        so far) should. Raises ``trio.WouldBlock`` when full, ``trio.ClosedResourceError``
        once closed."""
        if self._closed:
            raise trio.ClosedResourceError("the Limiter's inbox is closed")
        reports = self._reports
        if len(reports) >= self._size:
            raise trio.WouldBlock
        reports.append(report)
        task = self._waiting
        if task is not None:
            if report.kept and report.kind == "ok":
                self._calm += 1
                if self._calm < self.linger:
                    return
            self._waiting = None
            trio.lowlevel.reschedule(task)

    async def send(self, report: AttemptReport) -> None:
        """:meth:`send_nowait`, waiting for room while the inbox is full."""
        while True:
            try:
                self.send_nowait(report)
            except trio.WouldBlock:
                await self._room.park()
            else:
                await trio.lowlevel.checkpoint()
                return

    async def burst(self, deadline: float) -> list[AttemptReport] | None:
        """(the Limiter) Every report waiting, at once if any are; else wait until a
        report wakes it or ``deadline`` (trio time, seconds) comes. ``[]``: the deadline
        came first; None: closed and empty."""
        if not self._reports:
            if self._closed:
                return None
            if deadline == math.inf:  # no cancel scope (~8 µs to enter and leave) for none
                await self._park()
            else:
                with trio.move_on_at(deadline):
                    await self._park()
        reports = self._reports
        if not reports:
            return None if self._closed else reports
        self._reports = []
        if len(reports) >= self._size:
            self._room.unpark_all()
        return reports

    async def _park(self) -> None:
        task = trio.lowlevel.current_task()
        self._waiting = task
        self._calm = 0

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            self._waiting = None
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def close(self) -> None:
        """No more reports: a waiting Limiter wakes, takes what is left, then ends."""
        self._closed = True
        self._room.unpark_all()
        task = self._waiting
        if task is not None:
            self._waiting = None
            trio.lowlevel.reschedule(task)

    def statistics(self) -> tuple[int, bool]:
        """Reports waiting, and whether the Limiter waits for one."""
        return len(self._reports), self._waiting is not None
