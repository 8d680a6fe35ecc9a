"""Pure figures computed from the mock server's arrival stamps (times in seconds)."""

from __future__ import annotations

import bisect
import math
from collections.abc import Sequence

__all__ = [
    "achieved_rate",
    "max_in_window",
    "rate_series",
    "recovery_s",
]


def max_in_window(times: Sequence[float], window_s: float) -> int:
    """The most stamps in any half-open window ``[t, t + window_s)`` (``times`` sorted)."""
    best, start = 0, 0
    for end, t in enumerate(times):
        while times[start] <= t - window_s:
            start += 1
        best = max(best, end - start + 1)
    return best


def achieved_rate(times: Sequence[float]) -> float | None:
    """Stamps per second from the first to the last: ``(n - 1) / (last - first)``; None
    with fewer than two stamps or no time between them."""
    if len(times) < 2 or times[-1] <= times[0]:
        return None
    return (len(times) - 1) / (times[-1] - times[0])


def rate_series(
    times: Sequence[float], *, start: float, end: float, bin_s: float
) -> list[tuple[float, float]]:
    """Stamps per second in consecutive bins of ``bin_s`` seconds from ``start`` to
    ``end`` (``times`` sorted): ``[(bin start, rate), ...]``."""
    out: list[tuple[float, float]] = []
    bins = max(1, math.ceil((end - start) / bin_s))
    for k in range(bins):
        lo = start + k * bin_s
        count = bisect.bisect_left(times, lo + bin_s) - bisect.bisect_left(times, lo)
        out.append((lo, count / bin_s))
    return out


def _count(times: Sequence[float], lo: float, hi: float) -> int:
    return bisect.bisect_left(times, hi) - bisect.bisect_left(times, lo)


def recovery_s(
    times: Sequence[float],
    *,
    before: tuple[float, float],
    after: float,
    window_s: float = 1.0,
    share: float = 0.9,
    step_s: float = 0.05,
    until: float | None = None,
) -> tuple[float | None, float]:
    """How long after ``after`` (seconds) the rate of ``times`` (sorted) in a sliding
    ``window_s`` window first reaches ``share`` of its rate over ``before = (lo, hi)``.

    Returns ``(seconds or None if never before ``until`` / the last stamp, the
    baseline rate per second)``.
    """
    lo, hi = before
    baseline = _count(times, lo, hi) / (hi - lo) if hi > lo else 0.0
    if baseline <= 0 or not times:
        return None, baseline
    need = share * baseline * window_s
    stop = times[-1] if until is None else until
    t = after
    while t + window_s <= stop + 1e-9:
        if _count(times, t, t + window_s) >= need:
            return t - after, baseline
        t += step_s
    return None, baseline
