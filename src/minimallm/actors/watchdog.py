"""Watchdog: ends HTTP attempts that outlive TIMEOUT_S.

It watches one endpoint's :class:`Watches`: for each Worker, the attempt it is sending
and that attempt's deadline, which the Worker writes as the attempt starts and clears
as it ends (plain state in one trio run, like
:class:`~minimallm.actors.admission.Admission`: two list stores per attempt, no message,
no task switch). The Watchdog sleeps until the earliest deadline it saw, or for at
most ``tick_s``, looks again (an attempt that ended meanwhile has cleared its deadline;
attempts started since end later, since every attempt has the same TIMEOUT_S), and at
a deadline calls that
Worker's expiry handle with the attempt number; a Worker whose attempt already ended
ignores it. With nothing in flight it waits on its inbox and says so
(:attr:`Watches.idle`): the Worker that starts the next attempt tells it
(:class:`~minimallm.actors.messages.AttemptStarted`).

Why not a cancel scope per attempt: entering and leaving one costs ~8 µs of CPU here,
a quarter of a whole request against a fast server. Why not a message per attempt (as
before): building, sending and draining it cost ~7k CPU instructions per attempt at
latency 0, where the stores cost next to nothing; the Watchdog wakes about once per
``tick_s`` while attempts flow. The tick is kept for clocks that jump: a virtual clock
(``MockClock`` with autojump) jumps straight to the next deadline whenever every task
waits, e.g. on a thread, and would reach a far TIMEOUT_S in one jump; by ticks it
crawls, as it did before.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import trio

from minimallm.actors.messages import AttemptStarted

__all__ = ["Watchdog", "WatchdogStatistics", "Watches"]


class Watches:
    """One endpoint's attempts in flight, as its Watchdog sees them.

    ``deadlines[i]``: when Worker ``i``'s attempt must end (trio time, seconds; inf:
    none in flight) and ``seqs[i]`` its number, written by Worker ``i`` (cleared by
    the Watchdog once it has acted on it); ``idle`` (written by the Watchdog): it
    waits for the next attempt to start, so the Worker starting one tells it."""

    __slots__ = ("deadlines", "idle", "seqs")

    def __init__(self, workers: int) -> None:
        self.deadlines = [math.inf] * workers
        self.seqs = [0] * workers
        self.idle = False

    def __repr__(self) -> str:
        watched = sum(1 for d in self.deadlines if d < math.inf)
        return f"<Watches watched={watched} idle={self.idle}>"


class WatchdogStatistics(NamedTuple):
    """Workers with an attempt being watched now, and deadlines reached so far (an
    attempt that had already ended ignores its deadline)."""

    watched: int
    deadlines: int


class Watchdog:
    """Actor: interrupts attempts at their deadline (trio time, seconds)."""

    __slots__ = ("_deadlines", "_expire", "_inbox", "_tick_s", "_watches")

    def __init__(
        self,
        inbox: trio.MemoryReceiveChannel[AttemptStarted],
        watches: Watches,
        expire: Sequence[Callable[[int], None]],
        *,
        tick_s: float = 1.0,
    ) -> None:
        """``expire[i]``: Worker ``i``'s expiry handle (called with the attempt number);
        ``tick_s``: the longest sleep while attempts are in flight (seconds)."""
        self._inbox = inbox
        self._tick_s = tick_s
        self._watches = watches
        self._expire = tuple(expire)
        self._deadlines = 0

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Watchdog watched={s.watched} deadlines={s.deadlines}>"

    def statistics(self) -> WatchdogStatistics:
        """A frozen snapshot."""
        watched = sum(1 for d in self._watches.deadlines if d < math.inf)
        return WatchdogStatistics(watched, self._deadlines)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until the inbox closes."""
        task_status.started()
        inbox = self._inbox
        watches = self._watches
        deadlines, seqs = watches.deadlines, watches.seqs
        while True:
            now = trio.current_time()
            earliest = min(deadlines, default=math.inf)
            if earliest <= now:
                for worker, deadline in enumerate(deadlines):
                    if deadline <= now:
                        deadlines[worker] = math.inf  # acted on
                        self._deadlines += 1
                        self._expire[worker](seqs[worker])
                continue
            if earliest < math.inf:
                await trio.sleep_until(min(earliest, now + self._tick_s))
                continue
            watches.idle = True  # nothing in flight: the next attempt's Worker tells
            try:
                await inbox.receive()
            except trio.EndOfChannel:
                return
            finally:
                watches.idle = False
            while True:  # other Workers may have told too
                try:
                    inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                except trio.EndOfChannel:
                    return
