"""What every attempt says about the server, summed up for the other controllers.

Only the Limiter sees every attempt (each report returns its permit). It keeps one
:class:`FlowWatch`, which turns that stream into the few events the Pacer and the
Cooldown act on, so a healthy client sends each of them nothing at all:

- *congestion* steps and the return to calm (:mod:`minimallm._policy.congestion`),
  with how many steps came while the concurrency limit was already 1 (``floor_depth``:
  the Pacer cuts the rate at the first such step, the Cooldown pauses at the second),
  the rate of successes over the last second (``delivered_per_s``), that rate when the
  episode began (``baseline_per_s``, what the server gave before it pushed back), the
  smoothed latency of successes (``srtt_s``), and the rate of successes among the
  attempts sent since the episode's first step (``during_per_s``: what the server
  sustains while it refuses; 0 in a storm that refuses everything, the bucket's rate
  for a token bucket, see :mod:`minimallm._policy.rate`);
- *load-independent refusals*: during an episode, in windows of ``JUDGE_ANSWERS``
  answers to attempts sent after it began: once the client sends no faster than the
  most the server delivered during the episode (``JUDGE_SEND`` x that, successes per
  second over a second, looked at when a window is judged) and the refusals in
  the window still come at ``JUDGE_SHARE`` of the episode's share or more (and at
  least ``JUDGE_FLOOR``), in two windows in a row (one may hold the answers to attempts
  sent before the client's last reaction took hold: a rate just learned), backing off
  did not lower them: a real limit (a token bucket, a few slots) would refuse almost
  nothing at that pace. The refusals do not depend on the load: the signal
  tolerates that share (:meth:`~minimallm._policy.congestion.OverloadSignal.tolerate`),
  the episode ends with ``independent`` set, and the others undo their reactions
  (the concurrency limit returns to where it was, the learned rate and any pause end);
- *quiet*: ``quiet_after`` attempts in a row found no server (refused, DNS, no answer
  within TIMEOUT_S, or a gateway's word that the server behind it is gone:
  :func:`upstream_gone`, when nothing succeeded for ``GONE_AFTER_S``) with no answer in
  between to an attempt sent since the first of them (an attempt that was out when the
  server fell may still be answered: that says nothing about now), at a server that
  answered before — an outage is likely; and *answered*: the first answer after that
  to an attempt sent since. A timeout counts only if nothing was answered since its
  attempt went out: a server that answered others meanwhile is busy (a queueing server
  with TIMEOUT_S below its queue wait), not gone.

It also keeps the fastest tenth of the latencies of the run's *first wave* (the
attempts sent before the first success came back: sent at once, before any queue
could form at the server, so an unbiased sample; its k-th answer to come back, k a
tenth of the wave) and of the recent successes (the last ``LATENCY_SAMPLES``, within
``LATENCY_WINDOW_S``; :meth:`FlowWatch.fast_latencies`): far apart, the server
queues (latency rising with load), as :mod:`minimallm._policy.binding` tells.

Pure: no I/O, no clock (``now`` is passed in, seconds).
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from minimallm._policy.congestion import OverloadSignal
from minimallm._policy.flow_events import CongestionEvent, ReachEvent

if TYPE_CHECKING:
    from minimallm._outcome.attempts import AttemptKind

__all__ = ["CongestionEvent", "FlowWatch", "ReachEvent", "upstream_gone"]


def upstream_gone(status: int | None, retry_after_s: float | None) -> bool:
    """A gateway's answer that the server behind it is not there: 502 Bad Gateway, 504
    Gateway Timeout, or 503 without a Retry-After (nginx, a load balancer with no
    healthy backend). A 503 with a Retry-After is a server asking for time."""
    return status in (502, 504) or (status == 503 and retry_after_s is None)


_WINDOW_S = 1.0
GONE_AFTER_S = 1.0
"""Gateway answers that the server behind is gone make an outage only when nothing
succeeded for this long (seconds; or 4 round trips): a server with few slots answering
503 above them still serves some."""
QUIET_AFTER = 4
"""No-server attempts in a row that make a server that answered before look gone."""
LATENCY_SAMPLES = 256
"""Recent successes whose latencies are kept (for their fastest tenth)..."""
LATENCY_WINDOW_S = 10.0
"""...of those, the ones that came within this many seconds of the latest (at least
``LATENCY_SAMPLES // 16``, the latest, for a slow server)."""
JUDGE_ANSWERS = 64
JUDGE_SEND = 1.1
JUDGE_SHARE = 0.6
JUDGE_FLOOR = 0.15


class FlowWatch:
    """Congestion and reachability from the stream of attempts; see the module doc."""

    __slots__ = (
        "_answered",
        "_baseline",
        "_best",
        "_depth",
        "_during_n",
        "_first_at",
        "_first_fast",
        "_floor_depth",
        "_judge_from",
        "_judge_n",
        "_judge_over",
        "_judged",
        "_last_answer_at",
        "_last_ok_at",
        "_limit_before",
        "_quiet",
        "_quiet_from",
        "_quiet_run",
        "_recent_latencies",
        "_share_before",
        "_step1_at",
        "_successes",
        "_wave_left",
        "_wave_until",
        "quiet_after",
        "rttvar_s",
        "signal",
        "srtt_s",
    )

    def __init__(
        self,
        signal: OverloadSignal,
        *,
        quiet_after: int = QUIET_AFTER,
        assume_answered: bool = False,
    ) -> None:
        """``assume_answered``: count a server that never answered as one that stopped
        (with several endpoints of one model: one down from the start is held, its
        work going to the others, instead of failing the requests it takes)."""
        self.signal = signal
        self.quiet_after = quiet_after
        self.srtt_s: float | None = None
        self.rttvar_s = 0.0
        """How much the latency of successes varies (seconds, as TCP's RTTVAR)."""
        self._successes: deque[float] = deque()  # done times within the last second
        self._baseline = 0.0
        self._best = 0.0  # the most the server delivered (per s) during the episode
        self._first_at: float | None = None  # when the first attempt answered went out
        self._depth = 0
        self._floor_depth = 0
        self._step1_at = math.inf  # the current episode's first step
        self._during_n = 0  # successes of attempts sent since then
        self._judge_from = 0.0  # answers to attempts sent after this are judged
        self._judge_n = 0
        self._judge_over = 0
        self._judged: float | None = None  # the window before's share, if it passed
        self._limit_before = 0
        self._share_before = 0.0
        self._answered = assume_answered
        self._last_ok_at = -math.inf
        self._last_answer_at = -math.inf
        self._quiet_run = 0
        self._quiet_from = math.inf  # when the run's first no-server attempt went out
        self._quiet = False
        self._recent_latencies: deque[tuple[float, float]] = deque(maxlen=LATENCY_SAMPLES)
        self._wave_until: float | None = None  # the first success: the first wave's end
        self._wave_left = 0  # the first wave's answers to come before its fastest tenth's
        self._first_fast: float | None = None

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

    def fast_latencies(self) -> tuple[float | None, float | None]:
        """The fastest tenth of the recent successes' latencies (those within
        ``LATENCY_WINDOW_S`` of the latest) and of the first wave's (seconds; None
        until known)."""
        least = LATENCY_SAMPLES // 16
        recent = self._recent_latencies
        if len(recent) < least:
            return None, self._first_fast
        since = recent[-1][0] - LATENCY_WINDOW_S
        latest = [latency for at, latency in recent if at >= since]
        if len(latest) < least:
            latest = [latency for _, latency in list(recent)[-least:]]
        return sorted(latest)[len(latest) // 10], self._first_fast

    def answered_since(self, sent_at: float) -> bool:
        """True when the server answered something after ``sent_at``: an attempt sent
        then that timed out met a busy server, not a missing one."""
        return self._last_answer_at > sent_at

    @property
    def quiet(self) -> bool:
        """True while the server looks gone (after a :class:`ReachEvent` saying so)."""
        return self._quiet

    def observe(
        self,
        now: float,
        sent_at: float,
        kind: AttemptKind,
        limit: int,
        gone: bool = False,
        in_flight: int = 1,
    ) -> list[CongestionEvent | ReachEvent]:
        """One attempt ended (``kind`` as in :data:`minimallm._outcome.attempts.AttemptKind`);
        ``limit`` is the concurrency limit it was made under; ``gone``: a gateway's
        answer that the server behind it is not there (:func:`upstream_gone`);
        ``in_flight``: attempts out as it ended, itself included. The
        events it causes, usually none. Feed the signal's ``observe`` first (the
        Limiter's concurrency controller does): this reads its depth."""
        events: list[CongestionEvent | ReachEvent] = []
        if self._first_at is None:
            self._first_at = sent_at
        if gone:  # no server behind the gateway, if nothing succeeds for a while
            self._no_server(sent_at)
            if (
                self._answered
                and not self._quiet
                and self._quiet_run >= self.quiet_after
                and now - self._last_ok_at >= max(GONE_AFTER_S, 4.0 * (self.srtt_s or 0.0))
            ):
                self._quiet = True
                events.append(ReachEvent(now, False))
        elif kind in ("ok", "overload", "failed"):
            self._answered = True
            self._last_answer_at = now
            if sent_at >= self._quiet_from or not self._quiet_run:  # sent since: news
                self._quiet_run = 0
                self._quiet_from = math.inf
                if self._quiet:
                    self._quiet = False
                    events.append(ReachEvent(now, True))
        elif kind == "unreachable" or (kind == "timeout" and not self.answered_since(sent_at)):
            self._no_server(sent_at)
            if self._answered and not self._quiet and self._quiet_run >= self.quiet_after:
                self._quiet = True
                events.append(ReachEvent(now, False))
        if kind == "ok":
            if sent_at > self._step1_at:
                self._during_n += 1
            self._succeeded(now, sent_at, in_flight)
        depth = self.signal.depth
        if depth != self._depth:
            if self._depth == 0:
                self._step1_at, self._during_n = now, 0
                self._baseline = self.delivered_per_s(now)
                self._limit_before = limit
                self._share_before = self.signal.share
                self._best = self._baseline
                self._judge_from, self._judge_n, self._judge_over = now, 0, 0
                self._judged = None
            if depth == 0:
                self._floor_depth = 0
                self._step1_at = math.inf
            elif depth > self._depth and limit <= 1:
                self._floor_depth += 1
            self._depth = depth
            events.append(self._event(now))
        elif depth and sent_at > self._judge_from and kind in ("ok", "overload"):
            self._judge_n += 1
            self._judge_over += kind == "overload"
            share = self._judge(now) if self._judge_n >= JUDGE_ANSWERS else None
            if share is not None:
                self.signal.tolerate(share)
                self._depth = self._floor_depth = 0
                self._step1_at = math.inf
                events.append(self._event(now, independent=True))
        return events

    def observe_success(self, now: float, sent_at: float, in_flight: int) -> bool:
        """``observe(now, sent_at, "ok", limit, False, in_flight)`` in the common state,
        where it causes no event and does not read ``limit``: no episode (the signal's
        depth, already fed, and this watch's are 0) and no attempt in a row that found
        no server. True when done so; False: nothing done, call :meth:`observe`. The
        Limiter calls it for every success. ``in_flight`` < 0: not known (read only
        when needed: while the first wave's fastest tenth is not known yet)."""
        if self._depth or self.signal.depth or self._quiet_run or self._quiet:
            return False
        if in_flight < 0 and self._first_fast is None:
            return False
        # unlike observe, it leaves alone what cannot change here: _quiet_from is
        # inf while _quiet_run is 0, and _step1_at while _depth is 0
        if self._first_at is None:
            self._first_at = sent_at
        self._answered = True
        self._last_answer_at = now
        self._succeeded(now, sent_at, in_flight)
        return True

    def _succeeded(self, now: float, sent_at: float, in_flight: int) -> None:
        """A success's latency, smoothed as TCP does (RFC 6298), and its place in the
        last second's window."""
        self._last_ok_at = now
        latency = now - sent_at
        if latency < 0.0:
            latency = 0.0
        srtt = self.srtt_s
        if srtt is None:
            self.srtt_s, self.rttvar_s = latency, latency / 2
        else:  # * 0.125 and * 0.25 are / 8 and / 4 to the bit, without an int to convert
            rttvar = self.rttvar_s
            error = latency - srtt
            self.srtt_s = srtt + error * 0.125
            if error < 0.0:
                error = -error
            self.rttvar_s = rttvar + (error - rttvar) * 0.25
        self._recent_latencies.append((now, latency))
        if self._first_fast is None:
            self._first_wave(now, sent_at, latency, in_flight)
        window = self._successes
        window.append(now)
        edge = now - _WINDOW_S
        while window[0] <= edge:  # keep one second: memory stays flat
            window.popleft()

    def _no_server(self, sent_at: float) -> None:
        if not self._quiet_run:
            self._quiet_from = sent_at
        self._quiet_run += 1

    def _judge(self, now: float) -> float | None:
        """The window's share of refusals if they do not depend on the load, else None
        (and a new window starts)."""
        n, over = self._judge_n, self._judge_over
        sent_per_s = n / max(now - self._judge_from, 1e-3)
        self._judge_from, self._judge_n, self._judge_over = now, 0, 0
        self._best = best = max(self._best, self.delivered_per_s(now))
        if sent_per_s > JUDGE_SEND * best:
            return None  # still sending faster than the server delivered: not judged yet
        share = over / n
        if share < max(JUDGE_FLOOR, JUDGE_SHARE * self._share_before):
            self._judged = None
            return None
        # two windows in a row: one may still hold the answers to attempts sent before
        # the client's last reaction took hold (a rate just learned)
        before, self._judged = self._judged, share
        if before is None:
            return None
        self._judged = None
        return (before + share) / 2

    def during_per_s(self, now: float) -> float:
        """Successes per second among attempts sent since the episode's first step
        (see :attr:`CongestionEvent.during_per_s`)."""
        span = now - self._step1_at - (self.srtt_s or 0.0)
        if not span > (self.srtt_s or 0.0) or not math.isfinite(span):
            return 0.0  # too early to tell (or no episode)
        return self._during_n / max(span, 0.01)

    def _first_wave(self, now: float, sent_at: float, latency: float, in_flight: int) -> None:
        """A success while the first wave's fastest tenth is not known yet."""
        if self._wave_until is None:  # the first success: the wave is what is out now
            self._wave_until = now
            self._wave_left = math.ceil(max(1, in_flight) / 10)
        if sent_at < self._wave_until:
            self._wave_left -= 1
            if self._wave_left <= 0:
                self._first_fast = latency

    def _event(self, now: float, *, independent: bool = False) -> CongestionEvent:
        return CongestionEvent(
            now,
            self._depth,
            self._floor_depth,
            self.delivered_per_s(now),
            self._baseline,
            self.srtt_s,
            independent,
            self._limit_before,
            self.during_per_s(now),
            self.rttvar_s,
        )
