"""When the whole client stops sending: the shared cooldown and outages.

The Cooldown actor owns one :class:`PauseControl`. It hears the overload answers and
every probe's outcome from the Workers, and from the Limiter (which sees every attempt,
:mod:`minimallm._policy.flow`) the steps of congestion and whether the server still
answers. It answers with a decision for the Pacer: *hold* (send nothing until a time,
then let one probe go) or *release*. Three reasons to hold, and nothing else:

1. **Sustained overload.** Overload that persisted through the client's own reactions
   (the concurrency limit dropped to one attempt at a time, then the rate, and the
   server still refuses; see :mod:`minimallm._policy.flow`), or a server that
   says its quota is exhausted (``x-ratelimit-remaining-* = 0`` on an overload answer).
   The pause lasts the server's latest Retry-After if it gave one, else the cooldown
   level (:class:`~minimallm._policy.cooldown.CooldownState`). Sporadic overload
   answers — a few percent of 503s from an otherwise healthy server — never pause
   anybody: they cost only the requests they hit.
2. **A refused probe.** After a pause exactly one attempt goes out. A success releases
   everyone; an overload means the overload persisted after the pause: pause again,
   the level doubling (or the new Retry-After).
3. **An outage.** Attempts in a row found no server (refused, DNS, proxy down, no
   answer within TIMEOUT_S, a gateway's 502/504 or bare 503 while nothing succeeds) at
   a server that answered before: the client holds and
   probes with one attempt at a time, every ``probe_s`` doubling up to
   ``max_probe_s``, instead of burning every request's attempts. The probe's own
   failures are not counted against its request (the Worker marks them *excused*). The
   first answer, of any status, ends the outage. An outage longer than
   ``outage_budget_s`` is given up: the client releases and requests fail the ordinary
   way (None: never give up). With several endpoints of one model, an endpoint's
   outage is not given up while another endpoint is up (``others_up``): its work
   goes there, and it goes on probing; and one given up while all were down is held
   again at its next attempt that finds no server once another is back.

A probe that never reports (its caller left) is re-issued after ``probe_timeout_s``.
Pure: no I/O, no clock (``now`` is passed in, seconds).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Literal, NamedTuple

from minimallm._policy.cooldown import CooldownState

if TYPE_CHECKING:
    from minimallm._outcome.attempts import AttemptKind

__all__ = ["PauseControl", "PauseDecision"]

Reason = Literal["cooldown", "outage"]


class PauseDecision(NamedTuple):
    """What the Pacer must do: ``hold`` until ``until`` then let one probe go, or
    (``hold`` False) release. ``reason`` says why it holds."""

    hold: bool
    until: float = -math.inf
    reason: Reason | None = None


RELEASE = PauseDecision(False)


class PauseControl:
    """The hold/release decisions; see the module docstring."""

    __slots__ = (
        "_budget_waits",
        "_given_up",
        "_outage_since",
        "_probe_interval_s",
        "_probe_out_at",
        "_retry_after",
        "asked_s",
        "cooldown",
        "holding",
        "max_probe_s",
        "outage_budget_s",
        "pauses",
        "probe_s",
        "probe_timeout_s",
    )

    def __init__(
        self,
        cooldown: CooldownState,
        *,
        probe_s: float = 0.5,
        max_probe_s: float = 5.0,
        outage_budget_s: float | None = None,
        probe_timeout_s: float = 60.0,
    ) -> None:
        self.cooldown = cooldown
        self.probe_s = probe_s
        self.max_probe_s = max(probe_s, max_probe_s)
        self.outage_budget_s = outage_budget_s
        self.probe_timeout_s = probe_timeout_s
        self.holding: Reason | None = None
        """Why the client is held now (None: not held)."""
        self.asked_s: float | None = None
        """The server's Retry-After (seconds) that set the current pause, if one did."""
        self.pauses = 0
        self._retry_after: float | None = None  # the latest Retry-After of an overload
        self._outage_since: float | None = None
        self._budget_waits = False  # the outage outlasted its budget; others are up
        self._given_up = False  # released at the budget (all down), not answered since
        self._probe_interval_s = probe_s
        self._probe_out_at: float | None = None  # when the current probe's hold ends

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
        if (
            self._outage_since is not None
            and self.outage_budget_s is not None
            and not self._budget_waits  # looked at again with each probe's outcome
        ):
            times.append(self._outage_since + self.outage_budget_s)
        return min(times)

    # -- inputs -------------------------------------------------------------------------

    def on_attempt(
        self,
        now: float,
        kind: AttemptKind,
        *,
        retry_after_s: float | None = None,
        exhausted: bool = False,
        probe: bool = False,
        gone: bool = False,
        others_up: bool = False,
    ) -> PauseDecision | None:
        """An overload answer, any probe's outcome, or (several endpoints) an attempt
        that found no server; a decision for the Pacer or None. ``gone``: a gateway
        said the server behind it is not there (an outage's probe found no server, like
        a refused connection); ``others_up``: another endpoint is up now."""
        if gone and probe and self.holding == "outage":
            kind = "unreachable"
        if self._given_up and others_up and kind in ("unreachable", "timeout"):
            self._given_up = False  # still down, and another endpoint is back: hold again
            return self.on_reach(now, False)
        if kind == "overload":
            self._retry_after = retry_after_s
            if probe and self.holding == "cooldown":  # the overload outlasted the pause
                return self._hold(now, "cooldown", retry_after_s, persisted=True)
            if probe and self.holding == "outage":
                return self._release()  # it answered: the server is back
            if self.holding is None and exhausted:
                return self._hold(now, "cooldown", retry_after_s, persisted=False)
            return None
        if not probe or self.holding is None:
            return None
        if kind in ("ok", "failed"):
            return self._release()
        if kind in ("unreachable", "timeout"):
            if self.holding == "outage":
                self._probe_interval_s = min(self.max_probe_s, 2.0 * self._probe_interval_s)
                return self._hold_outage(now)
            self._probe_out_at = now + self.probe_s  # a cooldown probe found no server
            return PauseDecision(True, self._probe_out_at, "cooldown")
        return None  # "broken": try again when the probe times out

    def on_congestion(
        self, now: float, floor_depth: int, *, independent: bool = False
    ) -> PauseDecision | None:
        """The Limiter saw a step of congestion; ``floor_depth``: the episode's steps
        that came while the concurrency limit was already 1. The second pauses.
        ``independent``: the episode's refusals did not depend on the load; a pause it
        caused ends."""
        if independent:
            return self._release() if self.holding == "cooldown" else None
        if floor_depth >= 2 and self.holding is None:
            return self._hold(now, "cooldown", self._retry_after, persisted=False)
        return None

    def on_reach(self, now: float, reachable: bool) -> PauseDecision | None:
        """The Limiter saw attempts in a row find no server, or the first answer since."""
        if reachable:
            self._given_up = False
            return self._release() if self.holding == "outage" else None
        if self.holding == "outage":
            return None
        self._outage_since = now
        self._budget_waits = False
        self._probe_interval_s = self.probe_s
        return self._hold_outage(now)

    def tick(self, now: float, *, others_up: bool = False) -> PauseDecision | None:
        """Time passed: re-issue a lost probe, or give an outage up (not while
        ``others_up``: another endpoint of the model takes the work)."""
        budget = self.outage_budget_s
        since = self._outage_since
        if since is not None and budget is not None and now >= since + budget:
            self._budget_waits = others_up
            if not others_up:
                decision = self._release()
                self._given_up = True
                return decision
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
        self.asked_s = retry_after_s
        self.pauses += 1
        self._probe_out_at = until
        return PauseDecision(True, until, reason)

    def _hold_outage(self, now: float) -> PauseDecision:
        until = now + self._probe_interval_s
        self.holding = "outage"
        self._probe_out_at = until
        return PauseDecision(True, until, "outage")

    def _release(self) -> PauseDecision:
        self.holding = None
        self.asked_s = None
        self._outage_since = None
        self._budget_waits = False
        self._probe_out_at = None
        return RELEASE
