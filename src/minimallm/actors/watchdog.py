"""Watchdog: ends HTTP attempts that outlive TIMEOUT_S.

Each Worker tells it when an attempt starts (:class:`AttemptStarted`: worker, attempt
number, deadline) with ``send_nowait`` — no task switch, because the Watchdog does
not wait on its inbox while it has anything to watch: it sleeps until the earliest
deadline it knows, or at most ``tick_s``, and then drains the inbox in one go. Only the
newest attempt of each Worker matters (a Worker makes one attempt at a time), so it
keeps one entry per Worker. At a deadline it calls that Worker's expiry handle with
the attempt number; a Worker whose attempt already ended ignores it.

Why not a cancel scope per attempt: entering and leaving one costs ~8 µs of CPU here,
a quarter of a whole request against a fast server; this costs one ``send_nowait``
(~0.2 µs) per attempt and about one wake-up per ``tick_s`` while attempts are in
flight. The tick also bounds the inbox: at most ``tick_s`` worth of starts wait in it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import NamedTuple

import trio

from minimallm.actors.messages import AttemptStarted

__all__ = ["Watchdog", "WatchdogStatistics"]


class WatchdogStatistics(NamedTuple):
    """Workers with an attempt being watched now, and deadlines reached so far (an
    attempt that had already ended ignores its deadline)."""

    watched: int
    deadlines: int


class Watchdog:
    """Actor: interrupts attempts at their deadline (trio time, seconds)."""

    __slots__ = ("_deadlines", "_expire", "_inbox", "_latest", "_tick_s")

    def __init__(
        self,
        inbox: trio.MemoryReceiveChannel[AttemptStarted],
        expire: Sequence[Callable[[int], None]],
        *,
        tick_s: float = 1.0,
    ) -> None:
        self._inbox = inbox
        self._expire = tuple(expire)
        self._tick_s = tick_s
        self._latest: dict[int, tuple[int, float]] = {}  # worker -> (seq, deadline)
        self._deadlines = 0

    def __repr__(self) -> str:
        return f"<Watchdog watched={len(self._latest)} deadlines={self._deadlines}>"

    def statistics(self) -> WatchdogStatistics:
        """A frozen snapshot."""
        return WatchdogStatistics(len(self._latest), self._deadlines)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch until the inbox closes."""
        task_status.started()
        inbox = self._inbox
        latest = self._latest
        while True:
            while True:
                try:
                    started = inbox.receive_nowait()
                except trio.WouldBlock:
                    break
                except trio.EndOfChannel:
                    return
                latest[started.worker] = (started.seq, started.deadline)
            now = trio.current_time()
            earliest = math.inf
            for worker, (seq, deadline) in list(latest.items()):
                if deadline <= now:
                    del latest[worker]
                    self._deadlines += 1
                    self._expire[worker](seq)
                elif deadline < earliest:
                    earliest = deadline
            if not latest:
                try:
                    started = await inbox.receive()
                except trio.EndOfChannel:
                    return
                latest[started.worker] = (started.seq, started.deadline)
                continue
            await trio.sleep_until(min(earliest, now + self._tick_s))
