"""Pure progress bookkeeping and the text of every progress line (no I/O, no clock).

The Monitor actor feeds :class:`BatchTally` and prints what the ``format_*`` functions
return; tests pin those texts exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from minimallm._types import MinimaLlmFailure

__all__ = [
    "BatchTally",
    "LatencyHistogram",
    "StallContext",
    "failure_summary",
    "format_duration",
    "format_failure",
    "format_heartbeat",
    "format_stall",
    "format_summary",
]

PREFIX = "[minimallm]"


class LatencyHistogram:
    """Item latencies in log-spaced buckets (2% wide): constant memory for any batch
    size, percentiles within 2%."""

    __slots__ = ("_buckets", "_count")
    _RATIO = 1.02
    _FLOOR_S = 1e-4

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self._count = 0

    def add(self, seconds: float) -> None:
        """Record one latency (seconds)."""
        b = (
            0
            if seconds <= self._FLOOR_S
            else 1 + int(math.log(seconds / self._FLOOR_S, self._RATIO))
        )
        self._buckets[b] = self._buckets.get(b, 0) + 1
        self._count += 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) in seconds (bucket upper bound), None if empty."""
        if not self._count:
            return None
        rank = max(1, math.ceil(self._count * q / 100.0))
        seen = 0
        for b in sorted(self._buckets):
            seen += self._buckets[b]
            if seen >= rank:
                return self._FLOOR_S * self._RATIO**b
        raise AssertionError("unreachable: ranks are bounded by the count")


@dataclass
class BatchTally:
    """Counters of one batch (owned by its Monitor)."""

    total: int
    done: int = 0
    ok: int = 0
    cached: int = 0
    failed: int = 0
    none: int = 0
    sent: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tokens_reported: bool = False

    def __post_init__(self) -> None:
        self.latency = LatencyHistogram()


@dataclass(frozen=True, slots=True)
class StallContext:
    """What the stall warning explains: who is in flight, and whether a cooldown holds
    sends back. Times are seconds; ``cooldown_left_s`` is 0 when none is active."""

    in_progress: int
    oldest_age_s: float | None
    http_in_flight: int | None
    http_limit: int | None
    cooldown_left_s: float
    overloads: int


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (whole seconds)."""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _rate(count: int, elapsed: float) -> str:
    return f"{count / elapsed:.1f}/s" if elapsed > 0 else "-"


def _si(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.1f}"


def format_heartbeat(t: BatchTally, elapsed: float) -> str:
    """One heartbeat line: progress, rates, cache, failures, retries, tokens, ETA."""
    pct = 100.0 * t.done / t.total if t.total else 100.0
    parts = [
        f"{PREFIX} {format_duration(elapsed)} done {t.done}/{t.total} ({pct:.1f}%)",
        f"send {_rate(t.sent, elapsed)} recv {_rate(t.done, elapsed)}",
        f"cached {t.cached}",
        f"failed {t.failed}",
        f"retries {t.retries}",
    ]
    if t.tokens_reported and elapsed > 0:
        parts.append(
            f"tok/s in {_si(t.prompt_tokens / elapsed)} out {_si(t.completion_tokens / elapsed)}"
        )
    if t.done and t.done < t.total and elapsed > 0:
        parts.append(f"ETA {format_duration((t.total - t.done) * elapsed / t.done)}")
    elif t.done >= t.total:
        parts.append("ETA 0:00:00")
    else:
        parts.append("ETA ?")
    return " | ".join(parts)


def format_stall(since_s: float, ctx: StallContext) -> str:
    """The stall warning: how long nothing finished, and what is going on."""
    parts = [f"{PREFIX} STALL: no item finished for {since_s:.0f}s"]
    oldest = "" if ctx.oldest_age_s is None else f" (oldest started {ctx.oldest_age_s:.0f}s ago)"
    parts.append(f"{ctx.in_progress} in progress{oldest}")
    if ctx.http_in_flight is not None:
        parts.append(f"HTTP in flight {ctx.http_in_flight}/{ctx.http_limit}")
    if ctx.cooldown_left_s > 0:
        parts.append(
            f"cooldown active for {ctx.cooldown_left_s:.1f}s more "
            f"({ctx.overloads} overload answers so far)"
        )
    else:
        parts.append("no cooldown")
    return " | ".join(parts)


def format_failure(n: int, f: MinimaLlmFailure) -> str:
    """The reference's failure block::

    Failure 1: request-123
        TimeoutError: status=408
        attempts=6, timeout=60.0s [+0.0s, +1.2s, +3.5s, +8.1s, +17.3s, +36.8s]
        body=URLError: timed out
    """
    timeout = "-" if f.timeout_s is None else f"{f.timeout_s}s"
    body = f.body_snippet if f.body_snippet else f.message
    return (
        f"Failure {n}: {f.request_id}\n"
        f"    {f.error_type}: status={f.status}\n"
        f"    attempts={f.attempts}, timeout={timeout} {f.format_attempts()}\n"
        f"    body={body}"
    )


def failure_summary(f: MinimaLlmFailure) -> str:
    """One line per failure, for the abort message and the kept summaries."""
    status = "" if f.status is None else f" status={f.status}"
    return f"{f.request_id}: {f.error_type}{status} after {f.attempts} attempt(s): {f.message}"


def format_summary(t: BatchTally, elapsed: float) -> str:
    """The final summary line."""
    p50, p95 = t.latency.percentile(50), t.latency.percentile(95)
    lat = "-" if p50 is None or p95 is None else f"p50 {p50:.2f}s p95 {p95:.2f}s"
    parts = [
        f"{PREFIX} finished {t.done}/{t.total} in {format_duration(elapsed)}",
        f"ok {t.ok} (cached {t.cached})",
        f"failed {t.failed}",
        f"retries {t.retries}",
        f"latency {lat}",
    ]
    if t.none:
        parts.append(f"none {t.none}")
    if t.tokens_reported:
        parts.append(f"tokens in {t.prompt_tokens:,} out {t.completion_tokens:,}")
    return " | ".join(parts)
