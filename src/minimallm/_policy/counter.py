"""Events per second over a sliding window, in bounded memory (pure: ``now`` passed in)."""

from __future__ import annotations

import math
from collections import deque

__all__ = ["WindowCounter"]


class WindowCounter:
    """Events per second over the last ``window_s`` (buckets of a tenth of it)."""

    __slots__ = ("_buckets", "_width")

    def __init__(self, window_s: float) -> None:
        self._width = window_s / 10
        self._buckets: deque[list[float]] = deque()  # [bucket start, count]

    def add(self, now: float, count: float = 1.0) -> None:
        """``count`` events at ``now`` (seconds)."""
        start = math.floor(now / self._width) * self._width
        if self._buckets and self._buckets[-1][0] >= start:  # same bucket, or a late report
            self._buckets[-1][1] += count
        else:
            self._buckets.append([start, count])
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - 10 * self._width
        while self._buckets and self._buckets[0][0] + self._width <= horizon:
            self._buckets.popleft()

    def count(self, now: float) -> float:
        """Events over the last ``window_s``."""
        self._prune(now)
        return sum(b[1] for b in self._buckets)

    def rate(self, now: float) -> float:
        """Events per second over the last ``window_s`` (or since the first, if less)."""
        self._prune(now)
        if not self._buckets:
            return 0.0
        span = max(self._width, min(10 * self._width, now - self._buckets[0][0]))
        return sum(b[1] for b in self._buckets) / span
