"""Pacer: RPM pacing on absolute deadlines (the schedule is a pure
:class:`~minimallm._policy.PacingSchedule`; this actor only sleeps until each slot).

Jobs reach it only after the Limiter gave them a token and the cooldown gate let them
through, so the slot it takes is used at once: sends keep the paced spacing on the wire.
"""

from __future__ import annotations

import trio

from minimallm._attempts import AttemptJob
from minimallm._policy import PacingSchedule

__all__ = ["Pacer"]


class Pacer:
    """Sends each job on at its slot time."""

    __slots__ = ("_inbox", "_outbox", "_schedule", "_sent")

    def __init__(
        self,
        schedule: PacingSchedule,
        inbox: trio.MemoryReceiveChannel[AttemptJob],
        outbox: trio.MemorySendChannel[AttemptJob],
    ) -> None:
        self._schedule = schedule
        self._inbox = inbox
        self._outbox = outbox
        self._sent = 0

    def __repr__(self) -> str:
        return f"<Pacer {self._schedule!r} sent={self._sent}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take a slot per job (abandoned jobs take none) and forward at that time."""
        async with self._inbox, self._outbox:
            task_status.started()
            async for job in self._inbox:
                if not job.reply.abandoned:
                    slot = self._schedule.take_slot(trio.current_time())
                    await trio.sleep_until(slot)
                    self._sent += 1
                await self._outbox.send(job)
