"""Timed phases of the mock server: outages and 429 storms (pure: the clock is passed in).

Times count from the first chat request the server receives, so how long the client's
process takes to start does not matter:

* ``Outage(start_s, duration_s, mode="refuse")``: the server closes its listening
  socket(s) and resets every open connection, so connects are refused (ECONNREFUSED);
  afterwards it listens again on the same port. ``mode="blackhole"``: connections are
  accepted but nothing is answered (the client's timeouts fire).
* ``Storm(start_s, duration_s, status=429, retry_after_s=1.0)``: every chat request is
  answered ``status`` at once, with ``Retry-After`` unless ``retry_after_s`` is None.

On the command line: ``--outage START:DURATION[:MODE]`` and
``--storm START:DURATION[:STATUS[:RETRY_AFTER|none]]`` (seconds).
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "NORMAL",
    "Outage",
    "OutageMode",
    "Phase",
    "Storm",
    "Timeline",
    "parse_outage",
    "parse_storm",
    "phase_argv",
]

NORMAL = "normal"
"""The label of requests that arrive outside every phase."""

OutageMode = Literal["refuse", "blackhole"]
_MODES = ("refuse", "blackhole")


def _check_window(start_s: float, duration_s: float) -> None:
    for name, value in (("start_s", start_s), ("duration_s", duration_s)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
            raise ValueError(f"{name}={value!r} must be a finite number of seconds >= 0")
    if duration_s <= 0:
        raise ValueError(f"duration_s={duration_s!r} must be > 0 seconds")


@dataclass(frozen=True, slots=True)
class Outage:
    """The server is unreachable from ``start_s`` for ``duration_s`` seconds:
    ``refuse`` (connections refused and reset) or ``blackhole`` (accepted, never
    answered)."""

    start_s: float
    duration_s: float
    mode: OutageMode = "refuse"

    def __post_init__(self) -> None:
        _check_window(self.start_s, self.duration_s)
        if self.mode not in _MODES:
            raise ValueError(f"outage mode {self.mode!r} must be one of: {', '.join(_MODES)}")

    @property
    def kind(self) -> str:
        """``"outage"``."""
        return "outage"

    @property
    def end_s(self) -> float:
        """When it ends (seconds from the first chat request)."""
        return self.start_s + self.duration_s


@dataclass(frozen=True, slots=True)
class Storm:
    """Every chat request from ``start_s`` for ``duration_s`` seconds is answered
    ``status`` at once, with ``Retry-After: retry_after_s`` (seconds) unless None."""

    start_s: float
    duration_s: float
    status: int = 429
    retry_after_s: float | None = 1.0

    def __post_init__(self) -> None:
        _check_window(self.start_s, self.duration_s)
        if not 400 <= self.status <= 599:
            raise ValueError(f"storm status {self.status!r} must be within 400..599")
        ra = self.retry_after_s
        if ra is not None and not (math.isfinite(ra) and ra >= 0):
            raise ValueError(f"storm retry_after_s={ra!r} must be finite seconds >= 0 or None")

    @property
    def kind(self) -> str:
        """``"storm"``."""
        return "storm"

    @property
    def end_s(self) -> float:
        """When it ends (seconds from the first chat request)."""
        return self.start_s + self.duration_s


Phase = Outage | Storm


class Timeline:
    """Non-overlapping phases, sorted by start; ``at(elapsed)`` finds the one active
    ``elapsed`` seconds after the first chat request (start inclusive, end exclusive).

    Each phase has a label for the statistics: its kind (``outage``, ``storm``), with
    ``-2``, ``-3`` … for later phases of the same kind.
    """

    __slots__ = ("_starts", "labels", "phases")

    def __init__(self, phases: tuple[Phase, ...] = ()) -> None:
        ordered = tuple(sorted(phases, key=lambda p: p.start_s))
        for before, after in itertools.pairwise(ordered):
            if after.start_s < before.end_s:
                raise ValueError(f"phases overlap: {before} and {after}")
        self.phases = ordered
        self._starts = [p.start_s for p in ordered]
        seen: dict[str, int] = {}
        labels = []
        for p in ordered:
            seen[p.kind] = seen.get(p.kind, 0) + 1
            labels.append(p.kind if seen[p.kind] == 1 else f"{p.kind}-{seen[p.kind]}")
        self.labels: tuple[str, ...] = tuple(labels)

    def at(self, elapsed: float) -> int | None:
        """Index of the phase active at ``elapsed`` seconds, or None."""
        i = bisect.bisect_right(self._starts, elapsed) - 1
        if i >= 0 and elapsed < self.phases[i].end_s:
            return i
        return None

    def label(self, index: int | None) -> str:
        """The statistics label of phase ``index`` (``NORMAL`` for None)."""
        return NORMAL if index is None else self.labels[index]

    def __bool__(self) -> bool:
        return bool(self.phases)

    def __repr__(self) -> str:
        return f"<Timeline {list(zip(self.labels, self.phases, strict=True))}>"


def _seconds(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a number of seconds") from None


def parse_outage(text: str) -> Outage:
    """``START:DURATION[:MODE]`` -> Outage (ValueError naming what is wrong)."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 3:
        raise ValueError(f"expected START:DURATION[:refuse|blackhole], got {text!r}")
    mode = parts[2].strip().lower() if len(parts) == 3 else "refuse"
    if mode not in _MODES:
        raise ValueError(f"outage mode {mode!r} must be one of: {', '.join(_MODES)}")
    start, duration = _seconds(parts[0], "outage start"), _seconds(parts[1], "outage duration")
    return Outage(start, duration, "blackhole" if mode == "blackhole" else "refuse")


def parse_storm(text: str) -> Storm:
    """``START:DURATION[:STATUS[:RETRY_AFTER|none]]`` -> Storm (ValueError if bad)."""
    parts = text.split(":")
    if not 2 <= len(parts) <= 4:
        raise ValueError(f"expected START:DURATION[:STATUS[:RETRY_AFTER|none]], got {text!r}")
    start, duration = _seconds(parts[0], "storm start"), _seconds(parts[1], "storm duration")
    status = 429
    if len(parts) >= 3:
        if not parts[2].strip().isdigit():
            raise ValueError(f"storm status {parts[2]!r} is not an HTTP status")
        status = int(parts[2])
    retry_after: float | None = 1.0
    if len(parts) == 4:
        ra = parts[3].strip().lower()
        retry_after = None if ra == "none" else _seconds(ra, "storm Retry-After")
    return Storm(start, duration, status, retry_after)


def phase_argv(phase: Phase) -> list[str]:
    """The command-line arguments that rebuild ``phase`` (inverse of the parsers)."""
    if isinstance(phase, Outage):
        return ["--outage", f"{phase.start_s!r}:{phase.duration_s!r}:{phase.mode}"]
    ra = "none" if phase.retry_after_s is None else repr(phase.retry_after_s)
    return ["--storm", f"{phase.start_s!r}:{phase.duration_s!r}:{phase.status}:{ra}"]
