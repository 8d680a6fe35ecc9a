"""The text of every progress line, from a :class:`BatchProgress` (pure; tests pin it).

Lines stay under :data:`MAX_LINE` characters (they go to logs and SLURM files, often
read at 80-100 columns): a line is built from a head and optional parts in order of
importance, and parts that would make it too long are left out. Large counts are
written short (``1.23M``).
"""

from __future__ import annotations

from collections.abc import Iterable

from minimallm._progress.snapshot import BatchProgress
from minimallm._types import MinimaLlmFailure

__all__ = [
    "MAX_LINE",
    "PREFIX",
    "failure_summary",
    "format_duration",
    "format_failure",
    "format_stall",
    "format_summary",
    "format_tick",
]

PREFIX = "[minimallm]"
MAX_LINE = 99


def format_duration(seconds: float) -> str:
    """``H:MM:SS`` (whole seconds)."""
    s = max(0, int(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _seconds(s: float) -> str:
    return f"{s:.2f}s" if s < 10 else f"{s:.0f}s"


def _count(n: int) -> str:
    if n >= 1_000_000:
        return f"{n / 1e6:.2f}M"
    if n >= 100_000:
        return f"{n / 1e3:.1f}k"
    return f"{n:,}"


def _rate(per_s: float) -> str:
    return f"{per_s:.1f}/s" if per_s < 1000 else f"{per_s:.0f}/s"


def _line(head: str, parts: Iterable[str | None]) -> str:
    line = head
    for part in parts:
        if part and len(line) + 3 + len(part) <= MAX_LINE:
            line += " | " + part
    return line


def format_tick(p: BatchProgress) -> list[str]:
    """The heartbeat: progress, then the HTTP side (what holds the client back, the
    server's own time per attempt, the time items waited before their first send)."""
    if p.total is None:
        head = f"{PREFIX} {format_duration(p.elapsed_s)} {_count(p.done)} done"
    else:
        pct = 100.0 * p.fraction if p.fraction is not None else 100.0
        head = f"{PREFIX} {format_duration(p.elapsed_s)} {_count(p.done)}/{_count(p.total)}"
        head += f" {pct:.1f}%"
    eta = "ETA ?" if p.eta_s is None else f"ETA {format_duration(p.eta_s)}"
    first = _line(
        head,
        [
            _rate(p.done_rate),
            eta if p.total is not None else None,
            _calls(p),
            f"failed {_count(p.failed)}" if p.failed else None,
            f"cached {_count(p.cached)}" if p.cached else None,
            f"retries {_count(p.retries)}" if p.retries else None,
        ],
    )
    if not p.attempts and p.binding is None:
        return [first]
    http = [
        part
        for part in (
            f"server {_seconds(p.server_s)}" if p.server_s is not None else None,
            f"waited {_seconds(p.waiting_s)}" if p.waiting_s is not None else None,
            f"{_rate(p.send_rate)} HTTP",
        )
        if part
    ]
    if p.binding is not None:
        head = f"{PREFIX}   held back by {p.binding}"
    else:
        head, http = f"{PREFIX}   {http[0]}", http[1:]
    return [first, _line(head, http)]


def format_stall(p: BatchProgress) -> list[str]:
    """The stall warning: how long nothing finished, and what is going on."""
    stalled = format_duration(p.stalled_s or 0.0)
    oldest = "" if p.oldest_s is None else f", oldest {format_duration(p.oldest_s)}"
    first = _line(
        f"{PREFIX} STALL: nothing finished for {stalled}",
        [f"{p.in_progress} in progress{oldest}"],
    )
    why = f"held back by {p.binding}" if p.binding else "nothing holds it back"
    second = _line(
        f"{PREFIX}   {why}",
        [
            None if p.http_in_flight is None else f"HTTP in flight {p.http_in_flight}",
            f"server {_seconds(p.server_s)}" if p.server_s is not None else None,
        ],
    )
    return [first, second]


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


def format_summary(p: BatchProgress) -> list[str]:
    """The final summary: counts, then latency and tokens."""
    total = "?" if p.total is None else _count(p.total)
    first = _line(
        f"{PREFIX} finished {_count(p.done)}/{total} in {format_duration(p.elapsed_s)}",
        [
            f"ok {_count(p.ok)} (cached {_count(p.cached)})",
            f"failed {_count(p.failed)}",
            f"retries {_count(p.retries)}",
            f"none {_count(p.none)}" if p.none else None,
            _calls(p, running=False),
        ],
    )
    if p.latency_p50_s is None or p.latency_p95_s is None:
        return [first]
    latency = f"latency p50 {_seconds(p.latency_p50_s)} p95 {_seconds(p.latency_p95_s)}"
    if not p.tokens_reported:
        return [first, f"{PREFIX}   {latency}"]
    tokens = f"tokens in {_si(p.prompt_tokens)} out {_si(p.completion_tokens)}"
    if not p.cached_tokens and not p.reasoning_tokens:
        return [first, _line(f"{PREFIX}   {latency}", [tokens])]
    # the details get a line of their own: the latency line has no room for them
    tokens = f"{PREFIX}   tokens in {_si(p.prompt_tokens)}"
    tokens += f" (cached {_si(p.cached_tokens)})" if p.cached_tokens else ""
    tokens += f" out {_si(p.completion_tokens)}"
    tokens += f" (reasoning {_si(p.reasoning_tokens)})" if p.reasoning_tokens else ""
    return [first, f"{PREFIX}   {latency}", tokens]


def _calls(p: BatchProgress, *, running: bool = True) -> str | None:
    """The LM calls the items' own code made (``run_dspy_batch``), if any; those still
    running too if ``running``."""
    if not p.calls and not (running and p.calls_running):
        return None
    text = f"LM calls {_count(p.calls)}"
    extra = [f"{_count(p.calls_running)} running"] if running and p.calls_running else []
    extra += [f"{_count(p.calls_cached)} cached"] if p.calls_cached else []
    return text + (f" ({', '.join(extra)})" if extra else "")


def _si(n: float) -> str:
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.1f}{unit}"
    return f"{n:.0f}"
