"""How fast to send when the server limits the *rate*: the learned rate under the RPM cap.

The Pacer actor owns one :class:`RateControl` and paces sends at :meth:`rate` (requests
per second; None: no learned limit, only the RPM cap if any). Two sources, the server's
explicit word first:

*The server's headers* (``x-ratelimit-*``, see :mod:`minimallm._policy.ratelimit`). The
bucket's refill rate ``R`` (requests, or tokens divided by the tokens a request uses) is
what the server sustains; the client sends at ``R`` scaled by how full the bucket is::

    rate = R * (0.75 + 0.5 * fill)          fill = remaining / limit, in [0, 1]

A full bucket is drained at 1.25 R, an empty one refilled at 0.75 R, so the bucket
settles half full and the client sends at R without ever finding it empty: no 429s in
steady state, goodput R.

*Plenty left is no rate.* A bucket with at least ``plenty`` requests left (or that many
requests' worth of tokens) does not limit the client now, whatever its refill rate: a
budget of 10,000 a day with 9,990 left is spent at full speed (its refill rate, 10 used
over 23h59m, would pace at one request every 2.4 hours). Such an answer clears the
header rate; the headers pace again when the bucket runs low.

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
from collections import deque

from minimallm._policy.ratelimit import RateLimitInfo

__all__ = ["RateControl"]

_WINDOW_S = 1.0
_HEADERS_STALE_S = 60.0


class _Counter:
    """Events per second over the last ``window_s`` (buckets of a tenth of it)."""

    __slots__ = ("_buckets", "_width")

    def __init__(self, window_s: float) -> None:
        self._width = window_s / 10
        self._buckets: deque[list[float]] = deque()  # [bucket start, count]

    def add(self, now: float, count: float = 1.0) -> None:
        start = math.floor(now / self._width) * self._width
        if self._buckets and self._buckets[-1][0] >= start:  # same bucket, or a late report
            self._buckets[-1][1] += count
        else:
            self._buckets.append([start, count])
        self._prune(now)

    def _prune(self, now: float) -> None:
        horizon = now - 10 * self._width
        while self._buckets and self._buckets[0][0] + self._width <= horizon:
            self._buckets.popleft()

    def rate(self, now: float) -> float:
        self._prune(now)
        if not self._buckets:
            return 0.0
        span = max(self._width, min(10 * self._width, now - self._buckets[0][0]))
        return sum(b[1] for b in self._buckets) / span


class RateControl:
    """The learned send rate; see the module docstring."""

    __slots__ = (
        "_floor_depth",
        "_header_at",
        "_header_rate",
        "_learned",
        "_min_rate",
        "_next_growth",
        "_sends",
        "_threshold",
        "_tokens_per_request",
        "_underused_since",
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
        self._sends = _Counter(_WINDOW_S)
        self._tokens_per_request: float | None = None
        self._underused_since: float | None = None
        self.srtt_s: float | None = None

    def __repr__(self) -> str:
        return f"<RateControl headers={self._header_rate} learned={self._learned}>"

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
        rates: list[float] = []
        plenty = 0
        tpr = self._tokens_per_request
        left = info.remaining_requests
        if left is not None and left >= self.plenty:
            plenty += 1
        else:
            r_req, fill_req = info.request_rate(), info.request_fill()
            if r_req is not None and fill_req is not None:
                rates.append(r_req * (0.75 + 0.5 * fill_req))
        left = info.remaining_tokens
        if left is not None and tpr and left >= self.plenty * tpr:
            plenty += 1
        else:
            r_tok, fill_tok = info.token_rate(), info.token_fill()
            if r_tok is not None and fill_tok is not None and tpr:
                rates.append(r_tok / tpr * (0.75 + 0.5 * fill_tok))
        if not rates:
            if plenty:  # the server's word: nothing binds now
                self._header_rate = None
                self._header_at = -math.inf
            return
        rate = min(rates)
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
    ) -> None:
        """The congestion episode changed; ``floor_depth``: its steps that came while
        the concurrency limit was already 1. A new one cuts the rate; ``independent``
        (its refusals did not depend on the load) forgets the learned rate."""
        if srtt_s is not None:
            self.srtt_s = srtt_s
        if independent:
            self._learned = None
            self._threshold = math.inf
            self._next_growth = math.inf
            self._floor_depth = 0
            return
        if floor_depth > self._floor_depth:
            before = self._learned if self._learned is not None else baseline_per_s
            before = max(before, baseline_per_s)
            # no history (the server pushed back from the start): double until it
            # pushes back again rather than creep up from a guess of nothing
            self._threshold = before if before > 2 * self._min_rate else math.inf
            self._learned = max(self._min_rate, 0.9 * delivered_per_s)
            self._next_growth = now + self._round_trip()
            self._underused_since = None
        self._floor_depth = floor_depth

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
        if learned < self._threshold:
            learned = min(self._threshold, 2.0 * learned)
        else:
            learned *= 1.02
        self._learned = learned
        if self._sends.rate(now) < 0.5 * learned:
            if self._underused_since is None:
                self._underused_since = now
            elif now - self._underused_since >= self.idle_s:
                self._learned = None  # no longer what holds the client back
                self._threshold = math.inf
                self._next_growth = math.inf
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
