"""How fast to send when the server limits the *rate*: the learned rate under the RPM cap.

The Pacer actor owns one :class:`RateControl` and paces sends at :meth:`rate` (requests
per second; None: no learned limit, only the RPM cap if any). Two sources, the server's
explicit word first:

*The server's headers* (``x-ratelimit-*``, see :mod:`minimallm._policy.ratelimit`). The
bucket's refill rate ``R`` (requests, or tokens divided by the tokens a request uses) is
what the server sustains; the client sends at ``R`` scaled by how full the bucket is
(:meth:`~minimallm._policy.ratelimit.RateLimitInfo.pace`)::

    rate = R * (0.75 + 0.5 * fill)          fill = remaining / limit, in [0, 1]

A full bucket is drained at 1.25 R, an empty one refilled at 0.75 R, so the bucket
settles half full and the client sends at R without ever finding it empty: no 429s in
steady state, goodput R.

*Plenty left is no rate.* A bucket with at least ``plenty`` requests left (or that many
requests' worth of tokens) does not limit the client now, whatever its refill rate: a
budget of 10,000 a day with 9,990 left is spent at full speed (its refill rate, 10 used
over 23h59m, would pace at one request every 2.4 hours). Such an answer clears the
header rate; the headers pace again when the bucket runs low.

*A rate limit without headers* (a token bucket answering 429, with a Retry-After or
nothing). A refused attempt frees its concurrency permit within a millisecond, so no
concurrency limit bounds how fast a client sends into an empty bucket: only a rate
does. The sign of a rate limit: the overload persisted past the concurrency's first
reaction (a second step of the episode) while the server kept answering attempts
sent since the episode began (the Limiter's ``during_per_s``: successes per second
among them, what the server sustains while refusing; a storm that refuses everything
delivers none; fresh rate headers say more, and win). A server with a few slots shows
the same while the concurrency finds them, so one more sign is needed: a refusal while
fewer attempts were out than the concurrency that held (slots refuse only when full),
or a steady latency (its ``rttvar`` at most ``STEADY`` of it at every step told for
``EVIDENCE_S``: a dip of a varying latency is no sign; then a bucket and slots
are the same server to a client, ``slots = rate x latency``, and a rate keeps a
refused attempt's permit from being re-used at once). The rate is then *limited*: it
starts just under what was delivered, and the headroom is probed gently::

    learned = 0.97 * during_per_s                       at the step (doubling per round
                                                        trip up to 0.97 x the last
                                                        second's successes, if more)
    learned = 0.97 * min(learned, sends/s - refusals/s)  at a refusal of an attempt
                                                         sent after the last cut, when
                                                         sends/s >= 0.8 x learned
    learned *= 1 + g * dt        per round trip without one; g = 1 %/s after a cut
                                 (4 %/s once learned), growing 25 % a second up to
                                 10 %/s

A bucket of ``b`` requests refilling at ``R`` thus sees a refusal about once every
few seconds (the paced client first refills it, then drains it at the slowly
growing excess), so goodput stays within a few percent of ``R`` and the refusals are
a handful per cycle instead of every retry of every refused request.

Refusals that pacing under what the server delivers does not stop come from no rate
limit (a storm, refusals whatever the load: :mod:`minimallm._policy.flow` judges
those). So a refusal with more than a quarter of the last second's sends refused is
no overshoot (the congestion steps deal with it); a further step within ``QUIET_S``
of the cut forgets the rate at once; an overshoot within ``QUIET_S`` of the last cut,
or before the rate grew 2 % past it, is a *strike* (soon after: the cut was not enough,
cut 10 % at least), and the ``STRIKES``-th in a row forgets it. Either way it is not
learned as a rate limit's again in that episode.

*Persisting overload without headers*. When overload persists although the concurrency
limit is down to one attempt at a time (a step of congestion at that floor, told by
the Limiter, see :mod:`minimallm._policy.flow`), the rate drops to 0.9 x the rate of successes over
the last second (what the server delivered while saying no), at least ``min_rate``;
what it delivered before the episode began becomes the *threshold* (none when it
delivered nothing yet: the rate then doubles until the server pushes back). Then, once per
round trip without a new step, the rate grows again: doubling below the threshold
(quick recovery after a storm), by 2 % above it (gentle probing: the saw tooth
averages about 0.95 of what the server sustains). When the learned rate is no longer
what holds the client back (the client sent less than half of it for ``idle_s``), it
is forgotten.

Pure: no I/O, no clock (``now`` is passed in, seconds).
"""

from __future__ import annotations

import math

from minimallm._policy.counter import WindowCounter
from minimallm._policy.ratelimit import RateLimitInfo

__all__ = ["RateControl"]

_WINDOW_S = 1.0
LIMITED_BELOW = 0.97
"""A limited rate starts this far under what the server delivered."""
GROWTH_MIN_PER_S = 0.01
GROWTH_LEARNED_PER_S = 0.04
"""The growth right after a rate limit's rate is learned (its estimate, made while the
client was still finding its pace, is often low): 4 %/s, not the 1 %/s after a cut."""
GROWTH_MAX_PER_S = 0.1
GROWTH_SPEEDUP_PER_S = 1.25
OVERSHOOT_SHARE = 0.25
"""At most this share of the last second's sends refused: a limited rate's overshoot."""
STEADY = 0.1
"""Latency varying by at most this share of it: steady (see the module docstring)."""
EVIDENCE_S = 2.0
"""A refusal below the concurrency that held counts as a rate limit's sign this long;
the latency is steady once no step told of it varying for this long."""
BINDING = 0.8
"""A refusal cuts a limited rate only while the client sends at this share of it or
more over the last second: below, something else holds it back (a concurrency limit
whose probes the server refuses), and the refusal is not the pace's doing."""
QUIET_S = 1.0
"""An overshoot sooner than this after the last cut (seconds) is a strike."""
STRIKE_GROWTH = 1.02
"""An overshoot before the rate grew this much past the last cut is a strike."""
STRIKE_CUT = 0.9
"""A strike cuts the rate at least this much (the cut before was not enough)."""
STRIKES = 4
_HEADERS_STALE_S = 60.0


class RateControl:
    """The learned send rate; see the module docstring."""

    __slots__ = (
        "_below_at",
        "_cut_at",
        "_cut_to",
        "_depth",
        "_floor_depth",
        "_grown_at",
        "_growth",
        "_header_at",
        "_header_rate",
        "_learned",
        "_limited",
        "_min_rate",
        "_next_growth",
        "_no_bucket",
        "_refusals",
        "_sends",
        "_strikes",
        "_threshold",
        "_tokens_per_request",
        "_underused_since",
        "_unsteady_at",
        "idle_s",
        "plenty",
        "srtt_s",
    )

    def __init__(self, *, min_rate: float = 0.5, idle_s: float = 2.0, plenty: int = 64) -> None:
        self._min_rate = min_rate
        self.plenty = plenty
        self.idle_s = idle_s
        self._header_rate: float | None = None
        self._header_at = -math.inf
        self._learned: float | None = None
        self._threshold = math.inf
        self._next_growth = math.inf
        self._floor_depth = 0
        self._depth = 0
        self._limited = False  # the learned rate is a rate limit's (see the docstring)
        self._cut_at = math.inf  # when it was last set; refusals of attempts sent after count
        self._cut_to = 0.0  # and to what
        self._below_at = -math.inf  # the last refusal below the concurrency that held
        self._unsteady_at = -math.inf  # the last step told with an unsteady latency
        self._growth = GROWTH_MIN_PER_S
        self._grown_at = 0.0
        self._strikes = 0  # overshoots in a row, each soon after the cut before
        self._no_bucket = False  # this episode's refusals are no rate limit's
        self._sends = WindowCounter(_WINDOW_S)
        self._refusals = WindowCounter(_WINDOW_S)
        self._tokens_per_request: float | None = None
        self._underused_since: float | None = None
        self.srtt_s: float | None = None

    def __repr__(self) -> str:
        limited = " limited" if self._limited else ""
        return f"<RateControl headers={self._header_rate} learned={self._learned}{limited}>"

    # -- inputs -------------------------------------------------------------------------

    def on_send(self, now: float) -> None:
        """A paced attempt went out at ``now`` (for the 'still what binds?' check)."""
        self._sends.add(now)

    def on_headers(self, now: float, info: RateLimitInfo, tokens: int | None = None) -> None:
        """An answer at ``now`` carried rate-limit headers (and said the request used
        ``tokens`` tokens, if it did)."""
        if tokens is not None and tokens > 0:
            tpr = self._tokens_per_request
            self._tokens_per_request = tokens if tpr is None else tpr + (tokens - tpr) / 16
        rate, plenty = info.pace(self._tokens_per_request, self.plenty)
        if rate is None:
            if plenty:  # the server's word: nothing binds now
                self._header_rate = None
                self._header_at = -math.inf
            return
        prev = self._header_rate
        self._header_rate = rate if prev is None else prev + (rate - prev) / 4
        self._header_at = now

    def on_congestion(
        self,
        now: float,
        floor_depth: int,
        *,
        delivered_per_s: float,
        baseline_per_s: float,
        srtt_s: float | None,
        independent: bool = False,
        depth: int = 0,
        during_per_s: float = 0.0,
        rttvar_s: float = 0.0,
    ) -> None:
        """The congestion episode changed: ``depth`` steps so far, ``floor_depth`` of
        them while the concurrency limit was already 1, ``during_per_s`` what the
        server delivered to attempts sent since the first (see the module docstring).
        A new floor step cuts the rate, a second step while the server still delivers
        makes it a limited rate; ``independent`` (its refusals did not depend on the
        load) forgets the learned rate."""
        if srtt_s is not None:
            self.srtt_s = srtt_s
            if rttvar_s > STEADY * srtt_s:
                self._unsteady_at = now
        if independent:
            self._forget()
            self._floor_depth = self._depth = 0
            return
        stepped, self._depth = depth > self._depth, depth
        if depth == 0:  # calm again: the next episode may be a rate limit's again
            self._no_bucket = False
            self._strikes = 0
        during = during_per_s  # 0: too early to tell (a step right after the first)
        if stepped and depth >= 2 and floor_depth == 0 and self._limited:
            if self._round_trip() <= now - self._cut_at < QUIET_S:
                # the overload went on although paced under what the server delivered:
                # no rate limit's (refusals whatever the load, a storm)
                self._forget()
                self._no_bucket = True
            else:
                self._overshoot(now, during or delivered_per_s)
        elif (
            stepped
            and depth >= 2
            and floor_depth == 0
            and during > 2 * self._min_rate
            and self._header(now) is None
            and not self._no_bucket
            and (now - self._unsteady_at > EVIDENCE_S or now - self._below_at <= EVIDENCE_S)
        ):
            self._limit(now, LIMITED_BELOW * during, GROWTH_LEARNED_PER_S)
            # what the server delivered over the last second (or before the episode)
            # is within reach at once: an estimate over a short span may be low
            best = LIMITED_BELOW * max(delivered_per_s, baseline_per_s)
            if self._learned is not None and best > self._learned:
                self._threshold = best
        elif floor_depth > self._floor_depth:
            before = self._learned if self._learned is not None else baseline_per_s
            before = max(before, baseline_per_s)
            # no history (the server pushed back from the start): double until it
            # pushes back again rather than creep up from a guess of nothing
            self._threshold = before if before > 2 * self._min_rate else math.inf
            self._learned = max(self._min_rate, 0.9 * delivered_per_s)
            self._next_growth = now + self._round_trip()
            self._underused_since = None
            self._limited = False
        self._floor_depth = floor_depth

    def on_refusal(
        self, now: float, sent_at: float, *, below: bool = False, full: bool = False
    ) -> None:
        """An attempt sent at ``sent_at`` was refused (an overload answer) at ``now``;
        ``full``: while the concurrency limit was (nearly) used up, so perhaps for its
        sake; ``below``: with fewer attempts out than the concurrency that held. A
        limited rate's overshoot cuts it (see the module docstring)."""
        if below:
            self._below_at = now
        if not self._limited or self._learned is None:
            return
        self._refusals.add(now)
        if full or sent_at <= self._cut_at:
            return
        sends = self._sends.rate(now)
        share = self._refusals.count(now) / max(1.0, self._sends.count(now))
        if sends < BINDING * self._learned or share > OVERSHOOT_SHARE:
            return  # not the pace's doing (it does not bind), or no mere overshoot
        self._overshoot(now, sends * (1.0 - share))

    def _overshoot(self, now: float, delivered: float) -> None:
        """Overload although paced at the limited rate; ``delivered``: what the server
        delivers now (requests per second). Cut to just under it; but an overshoot
        before the rate grew back past where the last cut put it (by
        ``STRIKE_GROWTH``), or within ``QUIET_S`` of that cut, is a *strike*: the cut
        did not help (soon after it: cut at least to ``STRIKE_CUT`` x the rate). The
        ``STRIKES``-th in a row forgets the rate for the rest of the episode: refusals
        that pacing under what the server delivers does not stop are no rate limit's
        (a server with few slots refusing as its latency varies, refusals whatever
        the load)."""
        learned = self._learned
        if learned is None or now - self._cut_at < self._round_trip():
            return  # answers to attempts sent before the cut took effect
        soon = now - self._cut_at < QUIET_S
        if soon or learned < STRIKE_GROWTH * self._cut_to:
            self._strikes += 1
            if self._strikes >= STRIKES:
                self._forget()
                self._no_bucket = True
                return
            # soon after the cut: it was not enough, cut harder
            most = STRIKE_CUT * learned if soon else learned
            self._limit(now, min(LIMITED_BELOW * delivered, most))
        else:
            self._strikes = 0
            self._limit(now, LIMITED_BELOW * min(learned, delivered))

    def _limit(self, now: float, rate: float, growth: float = GROWTH_MIN_PER_S) -> None:
        """Pace at ``rate`` (if lower than now) as a rate limit's, probing gently
        (``growth`` per second at first)."""
        rate = max(self._min_rate, rate)
        if self._learned is not None and self._limited and rate >= self._learned:
            return
        self._learned = self._threshold = self._cut_to = rate
        self._limited = True
        self._cut_at = self._grown_at = now
        self._growth = growth
        self._next_growth = now + self._round_trip()
        self._underused_since = None

    def _forget(self) -> None:
        self._learned = None
        self._threshold = math.inf
        self._next_growth = math.inf
        self._limited = False
        self._cut_at = math.inf

    def _round_trip(self) -> float:
        return min(1.0, max(0.05, self.srtt_s or 0.1))

    def wake_at(self) -> float:
        """When :meth:`tick` must run next (the next growth step), or inf."""
        return self._next_growth if self._learned is not None else math.inf

    def tick(self, now: float) -> None:
        """Grow the learned rate once per round trip without a new step."""
        learned = self._learned
        if learned is None or now < self._next_growth:
            return
        self._next_growth = now + self._round_trip()
        if self._limited and learned < self._threshold:
            learned = min(self._threshold, 2.0 * learned)
            self._grown_at = now
        elif self._limited:  # gently, faster the longer no refusal came
            dt = now - self._grown_at
            self._grown_at = now
            self._growth = min(GROWTH_MAX_PER_S, self._growth * GROWTH_SPEEDUP_PER_S**dt)
            learned *= 1.0 + self._growth * dt
        elif learned < self._threshold:
            learned = min(self._threshold, 2.0 * learned)
        else:
            learned *= 1.02
        self._learned = learned
        if self._sends.rate(now) < 0.5 * learned:
            if self._underused_since is None:
                self._underused_since = now
            elif now - self._underused_since >= self.idle_s:
                self._forget()  # no longer what holds the client back
        else:
            self._underused_since = None

    # -- output -------------------------------------------------------------------------

    def _header(self, now: float) -> float | None:
        return self._header_rate if now - self._header_at <= _HEADERS_STALE_S else None

    def rate(self, now: float) -> float | None:
        """Requests per second to send at, or None for no learned limit."""
        header = self._header(now)
        if header is None:
            return self._learned
        if self._learned is None:
            return header
        return min(header, self._learned)

    def interval_s(self, now: float) -> float | None:
        """Seconds between sends at :meth:`rate`, or None."""
        rate = self.rate(now)
        return None if rate is None else 1.0 / max(rate, self._min_rate)

    def source(self, now: float) -> str | None:
        """What sets :meth:`rate`: ``"headers"`` (the server's word), ``"learned"``
        (from overload answers), or None."""
        header = self._header(now)
        if header is None and self._learned is None:
            return None
        if header is not None and (self._learned is None or header <= self._learned):
            return "headers"
        return "learned"
