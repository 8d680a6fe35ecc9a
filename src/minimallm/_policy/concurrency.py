"""How many attempts may be in flight: the adaptive concurrency limit under MAX_OUTSTANDING.

The Limiter actor owns one :class:`ConcurrencyControl`; it tells it about every answer
(when it was sent, whether it was an overload, how many other attempts are still out)
and issues permits up to :attr:`~ConcurrencyControl.limit`. The rules, in the spirit of
TCP congestion control and Netflix's concurrency-limits:

*Start* at the cap (``MAX_OUTSTANDING``): the user's number is the best first guess.

*Decrease once per step of congestion* (:mod:`minimallm._policy.congestion`). At a step
the limit *freezes* (no new attempts start) until the first success arrives, or until
``decide_s`` passes without one; overloads of attempts sent before the decision belong
to that step. Then::

    limit    = max(1, min(attempts still in flight [+ 1 for the success], limit_before - 1))
    ssthresh = max(limit, beta * limit_before)    if the level before had held
               max(limit, ssthresh)               otherwise (the same episode goes on)

The attempts that survived the burst are what the server accepted: a server with 32
slots that saw 64 attempts answers 32 of them 429 at once and serves the rest, so the
limit lands on 32 in one step, without a storm of wasted attempts. A level *held* once it
saw a round trip of clean answers after the last decrease; steps before that (a 429
storm refuses the probes at limit 1 again and again) lower the limit but not
``ssthresh``, which stays where the episode's first step put it: when the storm ends,
slow start doubles back to it instead of crawling up by one per round trip.

*Increase while answers are clean*, only while the limit is what holds the client back
(an application that sends less does not raise it): below ``ssthresh`` by one per
success (doubling per round trip: *slow start*, fast recovery after an outage or a
storm); above it by one per round trip's worth of successes (``1 / limit`` each).

*Probe carefully*. The limit is *stable* once it has held a whole round trip without an
overload. Above both the stable limit and ``ssthresh`` the client is probing; an
overload of an attempt sent after the last decrease, received while at least
``stable`` other attempts are in flight, is the server refusing the probe: the
limit returns to the level below (which held) and the next probe waits twice as long (up to
``max_probe_wait_s``). A server with a fixed number of slots thus sees a probe now and
then, not one per round trip. Sporadic overloads (a few percent of 503s) are not steps
and, at a stable limit, change nothing: they cost only the requests they hit.

The limit is a float internally (additive increase); :attr:`limit` is its integer part,
always within ``[1, cap]``. Pure: no I/O, no clock (``now`` is passed in, seconds).
"""

from __future__ import annotations

import math

from minimallm._policy.congestion import OverloadSignal

__all__ = ["ConcurrencyControl"]


class ConcurrencyControl:
    """The concurrency limit and its reasons; see the module docstring."""

    __slots__ = (
        "_beta",
        "_decide_by",
        "_frozen_from",
        "_held",
        "_held_at",
        "_last_decrease",
        "_level",
        "_level_since",
        "_max_probe_wait_s",
        "_probe_at",
        "_probe_wait_s",
        "_ssthresh",
        "_stable",
        "cap",
        "decreases",
        "signal",
        "srtt_s",
    )

    def __init__(
        self,
        cap: int,
        *,
        beta: float = 0.5,
        max_probe_wait_s: float = 60.0,
        signal: OverloadSignal | None = None,
    ) -> None:
        if cap < 1:
            raise ValueError(f"cap must be >= 1, got {cap}")
        self.cap = cap
        self._beta = beta
        self._max_probe_wait_s = max_probe_wait_s
        self.signal = signal or OverloadSignal()
        self._level = float(cap)
        self._ssthresh = float(cap)
        self._stable = cap
        self._level_since = 0.0
        self._frozen_from: float | None = None  # limit before the freeze, while frozen
        self._held = True  # a round trip of clean answers since the last decrease
        self._held_at = -math.inf  # when they were last seen (the cap was never shown)
        self._decide_by = math.inf
        self._probe_wait_s = 1.0
        self._probe_at = -math.inf
        self._last_decrease = -math.inf
        self.srtt_s: float | None = None
        """Smoothed latency of successful attempts (seconds), None before the first."""
        self.decreases = 0

    def __repr__(self) -> str:
        state = " frozen" if self.frozen else ""
        return (
            f"<ConcurrencyControl limit={self.limit}/{self.cap} stable={self._stable} "
            f"ssthresh={self._ssthresh:.1f}{state}>"
        )

    @property
    def limit(self) -> int:
        """Attempts allowed in flight, in ``[1, cap]``."""
        return max(1, min(self.cap, int(self._level)))

    @property
    def stable(self) -> int:
        """The highest limit that held a round trip without overload (after a
        decrease: the level decided)."""
        return self._stable

    @property
    def held_at(self) -> float:
        """When a level decided after a decrease was last shown to hold (a round trip
        of clean answers; seconds): ``stable`` is a level the server took. -inf: never
        (the cap at the start, or a level restored since: no answer decided those)."""
        return self._held_at

    @property
    def frozen(self) -> bool:
        """True between a step of congestion and the decision it leads to: no new
        attempts go out meanwhile."""
        return self._frozen_from is not None

    @property
    def learned(self) -> bool:
        """True when the limit is below the cap because of what the server said."""
        return self.limit < self.cap or self.frozen

    def wake_at(self) -> float:
        """When :meth:`tick` must run next (the freeze's decision deadline), or inf."""
        return self._decide_by

    def _decide_s(self) -> float:
        rtt = self.srtt_s if self.srtt_s is not None else 0.5
        return min(1.0, max(0.01, 2.0 * rtt))

    def on_answer(self, now: float, sent_at: float, overloaded: bool, others: int) -> None:
        """An attempt sent at ``sent_at`` was answered at ``now``; ``others`` attempts
        are still in flight (not counting this one). Connection failures and timeouts
        are not answers: do not report them here."""
        frozen = self._frozen_from is not None  # self.frozen, without a property call
        step = self.signal.observe(now, sent_at, overloaded, not frozen)
        if overloaded:
            if step and sent_at > self._last_decrease:  # not one decided already
                self._freeze(now)
            elif (
                not frozen
                and sent_at > self._last_decrease
                and self._level >= max(self._stable, self._ssthresh) + 1
                and others >= self._stable
            ):
                self._refused_probe(now)
            return
        latency = now - sent_at
        if latency < 0.0:
            latency = 0.0
        srtt = self.srtt_s
        self.srtt_s = latency if srtt is None else srtt + (latency - srtt) / 8
        if frozen:
            self._decide(now, others + 1)
            return
        self._grow(now, others + 1)

    def on_success(self, now: float, sent_at: float, others: int) -> bool:
        """``on_answer(now, sent_at, False, others)``, the same decisions for every
        sequence of answers (shown against a frozen copy of the code before it in
        ``tests/actors/test_limiter_differential.py``), cheaper when calm (not frozen,
        no episode, no floor of refusals), as a healthy server keeps it: the Limiter
        calls it for every success. It tells the signal through its short path
        (:meth:`OverloadSignal.calm_success`), and calls ``_grow`` or
        ``_confirm`` only when they may change something; in any other state it is
        :meth:`on_answer`. ``others`` < 0: not known (the Limiter reads it only when
        needed); then False, and nothing done, if the decision needs it (not calm, or
        below the cap: is the limit what holds the client back?). Else True."""
        signal = self.signal
        level = self._level
        if self._frozen_from is not None or signal.depth or signal.floor:
            if others < 0:
                return False
            self.on_answer(now, sent_at, False, others)
            return True
        if others < 0 and level < self.cap:
            return False
        signal.calm_success()  # signal.observe(now, sent_at, False, True), calm
        latency = now - sent_at
        if latency < 0.0:
            latency = 0.0
        srtt = self.srtt_s  # as on_answer does, to the bit (* 0.125 is / 8)
        self.srtt_s = latency if srtt is None else srtt + (latency - srtt) * 0.125
        if level >= self.cap or others + 1 < int(level):  # _grow does not grow
            if not self._held or level >= self._stable + 1:  # int(level) > stable
                self._confirm(now)  # else it would change nothing
            return True
        self._grow(now, others + 1)
        return True

    def restore(self, now: float, level: int) -> None:
        """The episode's refusals did not depend on the load (:mod:`.flow`): undo its
        decreases, back to ``level`` (the limit when it began), which is stable."""
        level = max(self.limit, min(self.cap, level))
        self._frozen_from = None
        self._decide_by = math.inf
        self._level = self._ssthresh = float(level)
        self._stable = level
        self._held = True
        self._held_at = -math.inf
        self._level_since = now

    def limit_to(self, now: float, sent_at: float, level: int) -> None:
        """Lower the limit to ``level`` at once (never raises it): the Limiter's word
        that attempts time out in a busy server's queue (``level``: how many fit within
        TIMEOUT_S, by Little's law). Like a step, once per episode: an attempt sent
        before the last decrease changes nothing. Then additive increase (one per round
        trip), no slow start back into the queue."""
        if sent_at <= self._last_decrease or level >= self.limit or self.frozen:
            return
        self._level = self._ssthresh = float(max(1, level))
        self._stable = int(self._level)
        self._held = False
        self._level_since = now
        self._probe_at = now + self._probe_wait_s
        self._last_decrease = now
        self.decreases += 1

    def tick(self, now: float, in_flight: int) -> None:
        """Time passed; ``in_flight`` attempts are out. Ends a freeze that saw no
        success by ``decide_s``."""
        if self._frozen_from is not None and now >= self._decide_by:  # frozen
            self._decide(now, in_flight)

    # -- the rules ----------------------------------------------------------------------

    def _freeze(self, now: float) -> None:
        if self._frozen_from is None:
            self._frozen_from = self._level
        self._decide_by = now + self._decide_s()

    def _decide(self, now: float, survivors: int) -> None:
        before = self._frozen_from if self._frozen_from is not None else self._level
        self._frozen_from = None
        self._decide_by = math.inf
        # as many as survived, and at least one fewer than were refused at: a step at
        # level L says L is too many even when every attempt out then survives
        level = float(max(1, min(self.cap, survivors, int(before) - 1)))
        self._level = level
        if self._held:
            self._ssthresh = max(level, min(float(self.cap), self._beta * before))
        else:  # the episode goes on: the level before never held, ssthresh stays
            self._ssthresh = max(level, self._ssthresh)
        self._held = False
        self._stable = int(level)
        self._level_since = now
        self._probe_at = now + self._probe_wait_s
        self._last_decrease = now
        self.decreases += 1
        self.signal.settle(now)  # attempts out until now were part of this step

    def _refused_probe(self, now: float) -> None:
        # the level below the refused one held (it is where the probe started from)
        self._stable = max(self._stable, int(self._level) - 1)
        self._level = float(self._stable)
        self._level_since = now
        self._probe_wait_s = min(self._max_probe_wait_s, 2.0 * self._probe_wait_s)
        self._probe_at = now + self._probe_wait_s
        self._last_decrease = now
        self.decreases += 1

    def _grow(self, now: float, in_flight: int) -> None:
        level = self._level
        if level >= self.cap:
            self._confirm(now)
            return
        if in_flight < int(level):  # not what holds the client back: do not grow
            self._confirm(now)
            return
        if level < self._ssthresh:
            level = min(self._ssthresh, level + 1.0)
        elif now >= self._probe_at:
            level += 1.0 / level
        else:
            self._confirm(now)
            return
        self._confirm(now)
        if int(level) != int(self._level):
            self._level_since = now
        self._level = min(float(self.cap), level)

    def _confirm(self, now: float) -> None:
        """The current level held a round trip without overload: it is stable."""
        rtt = self.srtt_s or 0.0
        if not self._held and now - self._last_decrease >= 2.0 * rtt:
            self._held = True
            self._held_at = now
        if int(self._level) > self._stable and now - self._level_since >= 2.0 * rtt:
            self._stable = int(self._level)
            self._probe_wait_s = max(1.0, self._probe_wait_s / 2.0)
