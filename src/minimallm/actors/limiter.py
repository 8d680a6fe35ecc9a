"""Limiter: at most MAX_OUTSTANDING attempts between admission and their end.

It forwards a job only while it holds a free token; the Worker that ends the attempt
returns the token. Because a token is taken *before* the cooldown gate and the pacer,
a pacing slot is never spent on an attempt that would still wait for a free
connection: when the Pacer forwards, a Worker is ready.
"""

from __future__ import annotations

from dataclasses import dataclass

import trio

from minimallm._attempts import AttemptJob

__all__ = ["Limiter", "LimiterStatistics"]


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """How many attempts hold a token now, and the limit."""

    in_flight: int
    limit: int


class Limiter:
    """Counts tokens; tokens come back on ``tokens`` (one per finished attempt)."""

    __slots__ = ("_free", "_inbox", "_limit", "_outbox", "_tokens")

    def __init__(
        self,
        limit: int,
        inbox: trio.MemoryReceiveChannel[AttemptJob],
        outbox: trio.MemorySendChannel[AttemptJob],
        tokens: trio.MemoryReceiveChannel[None],
    ) -> None:
        self._limit = limit
        self._free = limit
        self._inbox = inbox
        self._outbox = outbox
        self._tokens = tokens

    def __repr__(self) -> str:
        return f"<Limiter in_flight={self._limit - self._free}/{self._limit}>"

    def statistics(self) -> LimiterStatistics:
        """Live counts, for the monitor's stall message and for tests."""
        return LimiterStatistics(in_flight=self._limit - self._free, limit=self._limit)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Forward jobs while a token is free; wait for a returned token otherwise."""
        async with self._inbox, self._outbox, self._tokens:
            task_status.started()
            async for job in self._inbox:
                if job.reply.abandoned:
                    job.reply.resolve(None)
                    continue
                self._collect_returned_tokens()
                while self._free == 0:
                    await self._tokens.receive()
                    self._free += 1
                self._free -= 1
                await self._outbox.send(job)

    def _collect_returned_tokens(self) -> None:
        while True:
            try:
                self._tokens.receive_nowait()
            except trio.WouldBlock:
                return
            self._free += 1
