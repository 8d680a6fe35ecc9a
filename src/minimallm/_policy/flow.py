"""What every attempt says about the server, summed up for the other controllers.

Only the Limiter sees every attempt (each report returns its permit). It keeps one
:class:`FlowWatch`, which turns that stream into the few events the Pacer and the
Cooldown act on, so a healthy client sends each of them nothing at all:

- *congestion* steps and the return to calm (:mod:`minimallm._policy.congestion`),
  with how many steps came while the concurrency limit was already 1 (``floor_depth``:
  the Pacer cuts the rate at the first such step, the Cooldown pauses at the second),
  the rate of successes over the last second (``delivered_per_s``), that rate when the
  episode began (``baseline_per_s``, what the server gave before it pushed back) and
  the smoothed latency of successes (``srtt_s``);
- *quiet*: ``quiet_after`` attempts in a row found no server (refused, DNS, no answer
  within TIMEOUT_S) with no answer in between, at a server that answered before — an
  outage is likely; and *answered*: the first answer after that.

Pure: no I/O, no clock (``now`` is passed in, seconds).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING

from minimallm._policy.congestion import OverloadSignal

if TYPE_CHECKING:
    from minimallm._outcome.attempts import AttemptKind

__all__ = ["CongestionEvent", "FlowWatch", "ReachEvent"]

_WINDOW_S = 1.0


@dataclass(frozen=True, slots=True)
class CongestionEvent:
    """The congestion episode changed at ``at``: ``depth`` steps so far (0: calm), of
    which ``floor_depth`` came while the concurrency limit was already down to 1 (so
    fewer attempts at once could not help: the rate, then a pause, must)."""

    at: float
    depth: int
    floor_depth: int
    delivered_per_s: float
    baseline_per_s: float
    srtt_s: float | None


@dataclass(frozen=True, slots=True)
class ReachEvent:
    """At ``at`` the server looked gone (``reachable`` False: attempts in a row found no
    server) or answered again (True)."""

    at: float
    reachable: bool


class FlowWatch:
    """Congestion and reachability from the stream of attempts; see the module doc."""

    __slots__ = (
        "_answered",
        "_baseline",
        "_depth",
        "_first_at",
        "_floor_depth",
        "_quiet",
        "_quiet_run",
        "_successes",
        "quiet_after",
        "signal",
        "srtt_s",
    )

    def __init__(
        self, signal: OverloadSignal, *, quiet_after: int = 4, assume_answered: bool = False
    ) -> None:
        """``assume_answered``: count a server that never answered as one that stopped
        (with several endpoints of one model: one down from the start is held, its
        work going to the others, instead of failing the requests it takes)."""
        self.signal = signal
        self.quiet_after = quiet_after
        self.srtt_s: float | None = None
        self._successes: deque[float] = deque()  # done times within the last second
        self._baseline = 0.0
        self._first_at: float | None = None  # when the first attempt answered went out
        self._depth = 0
        self._floor_depth = 0
        self._answered = assume_answered
        self._quiet_run = 0
        self._quiet = False

    def __repr__(self) -> str:
        return f"<FlowWatch depth={self._depth} quiet={self._quiet} srtt={self.srtt_s}>"

    def delivered_per_s(self, now: float) -> float:
        """Successes per second over the last second (or since the first attempt, if
        that is less than a second ago)."""
        window = self._successes
        while window and window[0] <= now - _WINDOW_S:
            window.popleft()
        span = _WINDOW_S if self._first_at is None else min(_WINDOW_S, now - self._first_at)
        return len(window) / max(span, 0.01)

    def observe(
        self, now: float, sent_at: float, kind: AttemptKind, limit: int
    ) -> list[CongestionEvent | ReachEvent]:
        """One attempt ended (``kind`` as in :data:`minimallm._outcome.attempts.AttemptKind`);
        ``limit`` is the concurrency limit it was made under. The events it causes,
        usually none. Feed the signal's ``observe`` first (the Limiter's concurrency
        controller does): this reads its depth."""
        events: list[CongestionEvent | ReachEvent] = []
        if self._first_at is None:
            self._first_at = sent_at
        if kind in ("ok", "overload", "failed"):
            self._answered = True
            self._quiet_run = 0
            if self._quiet:
                self._quiet = False
                events.append(ReachEvent(now, True))
        elif kind in ("unreachable", "timeout"):
            self._quiet_run += 1
            if self._answered and not self._quiet and self._quiet_run >= self.quiet_after:
                self._quiet = True
                events.append(ReachEvent(now, False))
        if kind == "ok":
            latency = max(0.0, now - sent_at)
            srtt = self.srtt_s
            self.srtt_s = latency if srtt is None else srtt + (latency - srtt) / 8
            window = self._successes
            window.append(now)
            while window[0] <= now - _WINDOW_S:  # keep one second: memory stays flat
                window.popleft()
        depth = self.signal.depth
        if depth != self._depth:
            if self._depth == 0:
                self._baseline = self.delivered_per_s(now)
            if depth == 0:
                self._floor_depth = 0
            elif depth > self._depth and limit <= 1:
                self._floor_depth += 1
            self._depth = depth
            events.append(
                CongestionEvent(
                    now,
                    depth,
                    self._floor_depth,
                    self.delivered_per_s(now),
                    self._baseline,
                    self.srtt_s,
                )
            )
        return events
