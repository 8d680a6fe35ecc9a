"""When the whole client stops sending: the shared cooldown and outages.

The Cooldown actor owns one :class:`PauseControl` and tells it about every attempt;
it answers with a decision for the Pacer: *hold* (send nothing until a time, then let
one probe go) or *release*. Three reasons to hold, and nothing else:

1. **Sustained overload.** Overload that persisted through the client's own reactions
   (a third step of congestion: the concurrency limit dropped, then the rate, and the
   server still refuses; see :mod:`minimallm._policy.congestion`), or a server that
   says its quota is exhausted (``x-ratelimit-remaining-* = 0`` on an overload answer).
   The pause lasts the server's Retry-After if it gave one, else the cooldown level
   (:class:`~minimallm._policy.cooldown.CooldownState`). Sporadic overload answers —
   a few percent of 503s from an otherwise healthy server — never pause anybody: they
   cost only the requests they hit.
2. **A refused probe.** After a pause exactly one attempt goes out. A success releases
   everyone; an overload means the overload persisted after the pause: pause again,
   the level doubling (or the new Retry-After).
3. **An outage.** ``outage_after`` attempts in a row found no server (connection
   refused, DNS, proxy down, no answer within TIMEOUT_S) with no answer in between, at
   a server that answered before: the client holds and probes with one attempt at a
   time, every ``probe_s`` doubling up to ``max_probe_s``, instead of burning every
   request's attempts. The probe's own failures are not counted against its request
   (the Worker marks them *excused*). The first answer, of any status, ends the outage.
   An outage longer than ``outage_budget_s`` is given up: the client releases and
   requests fail the ordinary way (None: never give up).

A probe that never reports (its caller left) is re-issued after ``probe_timeout_s``.
Pure: no I/O, no clock (``now`` is passed in, seconds).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from minimallm._policy.congestion import OverloadSignal
from minimallm._policy.cooldown import CooldownState

if TYPE_CHECKING:
    from minimallm._attempts import AttemptKind

__all__ = ["PauseControl", "PauseDecision"]

Reason = Literal["cooldown", "outage"]


@dataclass(frozen=True, slots=True)
class PauseDecision:
    """What the Pacer must do: ``hold`` until ``until`` then let one probe go, or
    (``hold`` False) release. ``reason`` says why it holds."""

    hold: bool
    until: float = -math.inf
    reason: Reason | None = None


RELEASE = PauseDecision(False)


class PauseControl:
    """The hold/release decisions; see the module docstring."""

    __slots__ = (
        "_answered",
        "_outage_since",
        "_probe_interval_s",
        "_probe_out_at",
        "_quiet_run",
        "_since",
        "cooldown",
        "holding",
        "max_probe_s",
        "outage_after",
        "outage_budget_s",
        "pauses",
        "probe_s",
        "probe_timeout_s",
        "signal",
    )

    def __init__(
        self,
        cooldown: CooldownState,
        *,
        probe_s: float = 0.5,
        max_probe_s: float = 5.0,
        outage_after: int = 4,
        outage_budget_s: float | None = None,
        probe_timeout_s: float = 60.0,
        signal: OverloadSignal | None = None,
    ) -> None:
        self.cooldown = cooldown
        self.signal = signal or OverloadSignal()
        self.probe_s = probe_s
        self.max_probe_s = max(probe_s, max_probe_s)
        self.outage_after = outage_after
        self.outage_budget_s = outage_budget_s
        self.probe_timeout_s = probe_timeout_s
        self.holding: Reason | None = None
        """Why the client is held now (None: not held)."""
        self.pauses = 0
        self._since = -math.inf  # when the current hold began
        self._answered = False  # the server has answered at least once
        self._quiet_run = 0  # attempts in a row that found no server
        self._outage_since: float | None = None
        self._probe_interval_s = probe_s
        self._probe_out_at: float | None = None  # when the current probe's hold ended

    def __repr__(self) -> str:
        return (
            f"<PauseControl holding={self.holding} pauses={self.pauses} "
            f"deadline={self.cooldown.deadline():.3f}>"
        )

    @property
    def outage_since(self) -> float | None:
        """When the current outage was declared (trio time, seconds), or None."""
        return self._outage_since

    def wake_at(self) -> float:
        """When :meth:`tick` must run next (probe timeout, outage budget), or inf."""
        times = [math.inf]
        if self._probe_out_at is not None:
            times.append(self._probe_out_at + self.probe_timeout_s)
        if self._outage_since is not None and self.outage_budget_s is not None:
            times.append(self._outage_since + self.outage_budget_s)
        return min(times)

    # -- inputs -------------------------------------------------------------------------

    def on_attempt(
        self,
        now: float,
        sent_at: float,
        kind: AttemptKind,
        *,
        retry_after_s: float | None = None,
        exhausted: bool = False,
        probe: bool = False,
    ) -> PauseDecision | None:
        """One attempt ended; a decision for the Pacer, or None for no change."""
        if kind in ("ok", "overload", "failed"):
            return self._answer(now, sent_at, kind, retry_after_s, exhausted, probe)
        if kind in ("unreachable", "timeout"):
            return self._no_server(now, probe)
        return None  # "broken": the server is there, the connection was not

    def _answer(
        self,
        now: float,
        sent_at: float,
        kind: AttemptKind,
        retry_after_s: float | None,
        exhausted: bool,
        probe: bool,
    ) -> PauseDecision | None:
        self._answered = True
        self._quiet_run = 0
        step = self.signal.observe(now, sent_at, kind == "overload")
        if self.holding == "outage":
            return self._release()  # any answer: the server is back
        if kind != "overload":
            if self.holding == "cooldown" and probe:
                return self._release()
            return None
        if self.holding == "cooldown":
            if probe:  # the overload outlasted the pause
                return self._hold(now, "cooldown", retry_after_s, persisted=True)
            return None  # an attempt already out when the pause began
        if exhausted or (step and self.signal.depth >= 3):
            return self._hold(now, "cooldown", retry_after_s, persisted=False)
        return None

    def _no_server(self, now: float, probe: bool) -> PauseDecision | None:
        self._quiet_run += 1
        if self.holding is not None and not probe:
            return None  # an attempt already out when the hold began
        outage = self._answered and self._quiet_run >= self.outage_after
        if self.holding == "outage":
            self._probe_interval_s = min(self.max_probe_s, 2.0 * self._probe_interval_s)
            return self._hold_outage(now)
        if outage:
            self._outage_since = now
            self._probe_interval_s = self.probe_s
            return self._hold_outage(now)
        if self.holding == "cooldown":  # the probe found no server: probe again soon
            self._probe_out_at = now + self.probe_s
            return PauseDecision(True, self._probe_out_at, "cooldown")
        return None

    def tick(self, now: float) -> PauseDecision | None:
        """Time passed: re-issue a lost probe, or give an outage up."""
        budget = self.outage_budget_s
        if (
            self._outage_since is not None
            and budget is not None
            and now >= self._outage_since + budget
        ):
            self._answered = False  # do not declare it again until the server answers
            return self._release()
        if self._probe_out_at is not None and now >= self._probe_out_at + self.probe_timeout_s:
            self._probe_out_at = now
            return PauseDecision(True, now, self.holding)
        return None

    # -- decisions ----------------------------------------------------------------------

    def _hold(
        self, now: float, reason: Reason, retry_after_s: float | None, *, persisted: bool
    ) -> PauseDecision:
        until = self.cooldown.pause(now, retry_after_s=retry_after_s, persisted=persisted)
        self.holding = reason
        self._since = now
        self.pauses += 1
        self._probe_out_at = until
        return PauseDecision(True, until, reason)

    def _hold_outage(self, now: float) -> PauseDecision:
        until = now + self._probe_interval_s
        self.holding = "outage"
        self._since = now
        self._probe_out_at = until
        return PauseDecision(True, until, "outage")

    def _release(self) -> PauseDecision:
        self.holding = None
        self._outage_since = None
        self._probe_out_at = None
        self._quiet_run = 0
        return RELEASE
