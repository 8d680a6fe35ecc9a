"""CooldownGate: after an overload (429/502/503/504) nobody sends until the shared
cooldown deadline has passed.

Workers report overloads on a channel; the gate folds them into a
:class:`~minimallm._policy.CooldownState` (pure: growth, decay, cap) and holds each
job until the deadline. Overloads are read before every job and again after every
wait, so one that arrives while the gate sleeps extends the wait.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from minimallm._attempts import AttemptJob
from minimallm._policy import CooldownState

__all__ = ["CooldownGate", "CooldownStatistics", "Overload"]


@dataclass(frozen=True, slots=True)
class Overload:
    """A server said it is overloaded at trio time ``at`` (seconds) to an attempt sent
    at ``sent_at``."""

    at: float
    retry_after_s: float | None = None
    sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class CooldownStatistics:
    """The cooldown deadline (trio time, seconds) and how many overloads were seen."""

    deadline: float
    overloads: int


class CooldownGate:
    """Holds jobs until the cooldown deadline; owns the cooldown state."""

    __slots__ = ("_inbox", "_outbox", "_overloads", "_seen", "_state")

    def __init__(
        self,
        state: CooldownState,
        inbox: trio.MemoryReceiveChannel[AttemptJob],
        outbox: trio.MemorySendChannel[AttemptJob],
        overloads: trio.MemoryReceiveChannel[Overload],
    ) -> None:
        self._state = state
        self._inbox = inbox
        self._outbox = outbox
        self._overloads = overloads
        self._seen = 0

    def __repr__(self) -> str:
        return f"<CooldownGate deadline={self._state.deadline():.3f} overloads={self._seen}>"

    def statistics(self) -> CooldownStatistics:
        """The current deadline (after folding in pending overloads)."""
        self._fold_overloads()
        return CooldownStatistics(deadline=self._state.deadline(), overloads=self._seen)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forward each job once ``now >= deadline``."""
        async with self._inbox, self._outbox, self._overloads:
            task_status.started()
            async for job in self._inbox:
                self._fold_overloads()
                while not job.reply.abandoned and self._state.deadline() > trio.current_time():
                    await trio.sleep_until(self._state.deadline())
                    self._fold_overloads()
                await self._outbox.send(job)

    def _fold_overloads(self) -> None:
        while True:
            try:
                event = self._overloads.receive_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                return
            self._seen += 1
            self._state.on_overload(event.at, event.retry_after_s, event.sent_at)
