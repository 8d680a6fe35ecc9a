"""Limiter: at most MAX_OUTSTANDING attempts in flight, because an attempt needs a
Worker and there are exactly MAX_OUTSTANDING of them.

A token *is* a Worker (its connection): taking one lends the Worker to the admitted
caller, giving it back ends the attempt. Idle Workers are lent last-in first-out, so
a lightly loaded backend keeps reusing the same few warm connections instead of
cycling through all of them (and letting the rest go stale).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from minimallm.actors.worker import Worker

__all__ = ["Limiter", "LimiterStatistics"]


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """How many attempts hold a Worker now, and the limit."""

    in_flight: int
    limit: int


class Limiter:
    """The idle Workers (a LIFO stack). Owned by the Admission actor."""

    __slots__ = ("_idle", "workers")

    def __init__(self, workers: Sequence[Worker]) -> None:
        self.workers = tuple(workers)
        self._idle = list(reversed(self.workers))  # workers[0] is lent first

    def __repr__(self) -> str:
        return f"<Limiter in_flight={len(self.workers) - len(self._idle)}/{len(self.workers)}>"

    @property
    def free(self) -> int:
        """Workers idle now (tokens free)."""
        return len(self._idle)

    def take(self) -> Worker:
        """Lend the most recently used idle Worker (callers check :attr:`free`)."""
        return self._idle.pop()

    def give_back(self, worker: Worker) -> None:
        """The attempt on ``worker`` is over."""
        assert len(self._idle) < len(self.workers), "a Worker was given back twice"
        self._idle.append(worker)

    def statistics(self) -> LimiterStatistics:
        """Live counts, for the monitor's stall message and for tests."""
        return LimiterStatistics(len(self.workers) - len(self._idle), len(self.workers))
