"""What a server says about its rate limit: the ``x-ratelimit-*`` headers.

OpenAI (and servers imitating it) send, on every answer::

    x-ratelimit-limit-requests: 10000        requests the bucket holds
    x-ratelimit-remaining-requests: 9990     requests left now
    x-ratelimit-reset-requests: 6m0s         time until the bucket is full again
    x-ratelimit-limit-tokens / -remaining-tokens / -reset-tokens    the same for tokens

Durations come as Go-style strings (``6m0s``, ``1.5s``, ``20ms``, ``1h2m3s``) or as a
plain number of seconds. A bucket that refills at ``r`` per second is full again after
``(limit - remaining) / r`` seconds, so whatever the window the server counts in, the
refill rate is ``(limit - remaining) / reset`` (:meth:`RateLimitInfo.request_rate`).

Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import NamedTuple

__all__ = ["RateLimitInfo", "parse_duration", "parse_rate_limit_headers"]

_UNIT_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(h|ms|m|s|us|µs|ns)")
_RANK = {"h": 0, "m": 1, "s": 2, "ms": 3, "us": 4, "µs": 4, "ns": 5}
"""Units in the order a Go duration writes them, each at most once."""
_PLAIN = re.compile(r"\d+(?:\.\d*)?|\.\d+")


def parse_duration(text: str) -> float | None:
    """Seconds in ``text``: a Go-style duration (``6m0s``, ``20ms``, ``1h2m3.5s``: units
    from large to small, each at most once) or a plain non-negative number of seconds
    (``"12"``, ``"0.5"``); None if it is neither (``"1h1h1h"``, ``"soon"``)."""
    text = text.strip()
    if not text:
        return None
    if _PLAIN.fullmatch(text):
        value = float(text)
        return value if math.isfinite(value) else None
    total = 0.0
    pos = 0
    rank = -1
    for match in _PART.finditer(text):
        unit = match.group(2)
        if match.start() != pos or _RANK[unit] <= rank:
            return None  # not one duration: "1h1h1h", "5s1h", junk in between
        rank = _RANK[unit]
        total += float(match.group(1)) * _UNIT_S[unit]
        pos = match.end()
    if pos != len(text) or not math.isfinite(total):
        return None
    return total


def _count(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit():
        return None
    return int(value)


_EPOCH_AFTER_S = 1e9
"""A plain "reset" number this large is a moment (Unix seconds, 2001 on), not a wait:
some gateways say when a calendar window reopens."""


def _seconds(headers: Mapping[str, str], name: str, now_wall: float | None) -> float | None:
    value = headers.get(name)
    if value is None:
        return None
    seconds = parse_duration(value)
    if seconds is not None and seconds >= _EPOCH_AFTER_S:
        if now_wall is None:
            return None
        return max(0.0, seconds - now_wall)
    return seconds


class RateLimitInfo(NamedTuple):
    """One answer's ``x-ratelimit-*`` headers (None where absent or unreadable).
    Counts are requests or tokens; ``reset_*_s`` are seconds until the bucket is full."""

    limit_requests: int | None = None
    remaining_requests: int | None = None
    reset_requests_s: float | None = None
    limit_tokens: int | None = None
    remaining_tokens: int | None = None
    reset_tokens_s: float | None = None

    @staticmethod
    def _rate(limit: int | None, remaining: int | None, reset: float | None) -> float | None:
        if limit is None or remaining is None or reset is None or limit <= 0:
            return None
        used = limit - remaining
        if used <= 0 or reset <= 0:
            return None  # a full bucket (or nonsense) says nothing about the refill rate
        return used / reset

    def request_rate(self) -> float | None:
        """The bucket's refill rate in requests per second, if the headers tell it."""
        return self._rate(self.limit_requests, self.remaining_requests, self.reset_requests_s)

    def token_rate(self) -> float | None:
        """The token bucket's refill rate in tokens per second, if the headers tell it."""
        return self._rate(self.limit_tokens, self.remaining_tokens, self.reset_tokens_s)

    def request_fill(self) -> float | None:
        """``remaining / limit`` for requests (1.0 = full), if known."""
        return _fill(self.limit_requests, self.remaining_requests)

    def token_fill(self) -> float | None:
        """``remaining / limit`` for tokens (1.0 = full), if known."""
        return _fill(self.limit_tokens, self.remaining_tokens)

    @property
    def exhausted(self) -> bool:
        """True when the server says no request (or no token) is left now."""
        return self.remaining_requests == 0 or self.remaining_tokens == 0

    def pace(self, tokens_per_request: float | None, plenty: int) -> tuple[float | None, bool]:
        """The send rate these headers ask for (requests per second; None: they set
        none) and whether a bucket said it has ``plenty`` requests (or requests'
        worth of tokens) left. Each bucket that is not plenty asks for its refill
        rate ``R`` scaled by how full it is (the slower one wins)::

            rate = R * (0.75 + 0.5 * fill)          fill = remaining / limit

        (see :mod:`minimallm._policy.rate`)."""
        rates: list[float] = []
        said_plenty = False
        tpr = tokens_per_request
        left = self.remaining_requests
        if left is not None and left >= plenty:
            said_plenty = True
        else:
            r_req, fill_req = self.request_rate(), self.request_fill()
            if r_req is not None and fill_req is not None:
                rates.append(r_req * (0.75 + 0.5 * fill_req))
        left = self.remaining_tokens
        if left is not None and tpr and left >= plenty * tpr:
            said_plenty = True
        else:
            r_tok, fill_tok = self.token_rate(), self.token_fill()
            if r_tok is not None and fill_tok is not None and tpr:
                rates.append(r_tok / tpr * (0.75 + 0.5 * fill_tok))
        return (min(rates) if rates else None), said_plenty


def _fill(limit: int | None, remaining: int | None) -> float | None:
    if limit is None or remaining is None or limit <= 0:
        return None
    return min(1.0, max(0.0, remaining / limit))


def parse_rate_limit_headers(
    headers: Mapping[str, str], *, now_wall: float | None = None
) -> RateLimitInfo | None:
    """The ``x-ratelimit-*`` headers of an answer (looked up with lower-case names),
    or None when it carries none of them. A reset given as a moment (Unix seconds, a
    calendar window's end) becomes the wait until it from ``now_wall`` (``time.time()``;
    None: such a reset is ignored). Never raises."""
    info = RateLimitInfo(
        limit_requests=_count(headers, "x-ratelimit-limit-requests"),
        remaining_requests=_count(headers, "x-ratelimit-remaining-requests"),
        reset_requests_s=_seconds(headers, "x-ratelimit-reset-requests", now_wall),
        limit_tokens=_count(headers, "x-ratelimit-limit-tokens"),
        remaining_tokens=_count(headers, "x-ratelimit-remaining-tokens"),
        reset_tokens_s=_seconds(headers, "x-ratelimit-reset-tokens", now_wall),
    )
    return None if info == _EMPTY else info


_EMPTY = RateLimitInfo()
