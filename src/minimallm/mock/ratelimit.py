"""Token buckets and the rate-limit headers of the mock server (pure: the clock is passed in).

The mock's rate limit works like a real endpoint's: a bucket of ``burst`` request tokens
refilled at ``rate_per_s``; a request that finds no token is answered 429 at once with
``Retry-After`` (whole seconds rounded up, as real servers send it, or exact) and
``retry-after-ms`` (exact); every chat answer carries OpenAI's

    x-ratelimit-limit-requests      the bucket's size (OpenAI: the per-minute limit)
    x-ratelimit-remaining-requests  whole tokens left after this request
    x-ratelimit-reset-requests      time until the bucket is full again

and the ``-tokens`` variants when a token budget is set too. A request's tokens are
counted the way OpenAI reserves them on arrival: the words of every message plus
``max_tokens`` when given. Durations are written like OpenAI's (``"6m0s"``, ``"1.5s"``,
``"20ms"``) or as plain seconds (``"0.02"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from minimallm.mock.bodies import word_count

__all__ = [
    "Headers",
    "RateLimiter",
    "RateVerdict",
    "ResetStyle",
    "RetryAfterStyle",
    "TokenBucket",
    "format_duration",
    "request_tokens",
    "retry_after_headers",
]

Headers = tuple[tuple[str, str], ...]
"""Extra response headers, in order: ``((name, value), ...)``."""

ResetStyle = Literal["openai", "seconds"]
RetryAfterStyle = Literal["ceil", "exact"]


class TokenBucket:
    """``capacity`` tokens, refilled continuously at ``rate_per_s`` tokens per second,
    full at ``now`` (seconds, any monotonic clock; every call passes the current time).
    An amount larger than the capacity counts as the capacity, so any request can pass
    once the bucket is full.
    """

    __slots__ = ("_level", "_stamp", "capacity", "rate_per_s")

    def __init__(self, rate_per_s: float, capacity: float, now: float) -> None:
        if not (rate_per_s > 0 and math.isfinite(rate_per_s)):
            raise ValueError(f"rate_per_s={rate_per_s!r} must be a finite number > 0")
        if not (capacity >= 1 and math.isfinite(capacity)):
            raise ValueError(f"capacity={capacity!r} must be a finite number >= 1")
        self.rate_per_s = float(rate_per_s)
        self.capacity = float(capacity)
        self._level = self.capacity
        self._stamp = now

    def level(self, now: float) -> float:
        """Tokens in the bucket at ``now`` (fractional)."""
        if now > self._stamp:
            self._level = min(self.capacity, self._level + (now - self._stamp) * self.rate_per_s)
            self._stamp = now
        return self._level

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds from ``now`` until ``amount`` tokens are there (0.0: they are)."""
        missing = min(amount, self.capacity) - self.level(now)
        # A client that waits exactly the advertised time must pass despite rounding.
        return 0.0 if missing <= 1e-9 else missing / self.rate_per_s

    def take(self, amount: float, now: float) -> float:
        """Take ``amount`` tokens and return 0.0; or, if there are not enough, take
        nothing and return the seconds until there will be."""
        wait = self.wait_for(amount, now)
        if wait == 0.0:
            self._level -= min(amount, self.capacity)
        return wait

    def until_full(self, now: float) -> float:
        """Seconds until the bucket is full again (0.0 when full)."""
        return max(0.0, (self.capacity - self.level(now)) / self.rate_per_s)

    def __repr__(self) -> str:
        return (
            f"<TokenBucket {self._level:.2f}/{self.capacity:g} "
            f"at {self.rate_per_s:g}/s (as of t={self._stamp:.3f})>"
        )


def format_duration(seconds: float, style: ResetStyle = "openai") -> str:
    """A duration as OpenAI's rate-limit headers write it (Go's notation, millisecond
    resolution): 0.02 -> ``"20ms"``, 1 -> ``"1s"``, 1.5 -> ``"1.5s"``, 360 -> ``"6m0s"``,
    3725 -> ``"1h2m5s"``; with ``style="seconds"``, plain decimal seconds (``"0.02"``)."""
    ms = max(0, round(seconds * 1000))
    if style == "seconds":
        whole, frac = divmod(ms, 1000)
        return f"{whole}.{frac:03d}".rstrip("0").rstrip(".")
    if ms < 1000:
        return f"{ms}ms" if ms else "0s"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    whole, frac = divmod(rest, 1000)
    sec = f"{whole}" if not frac else f"{whole}.{frac:03d}".rstrip("0")
    head = (f"{hours}h" if hours else "") + (f"{minutes}m" if hours or minutes else "")
    return f"{head}{sec}s"


def retry_after_headers(seconds: float, style: RetryAfterStyle = "ceil") -> Headers:
    """``Retry-After`` (whole seconds rounded up, at least 1, or exact with ``"exact"``)
    and ``retry-after-ms`` (exact, rounded up to a millisecond) for a wait of ``seconds``."""
    if style == "ceil":
        after = str(max(1, math.ceil(seconds - 1e-9)))
    else:
        after = f"{seconds:.3f}".rstrip("0").rstrip(".") or "0"
    return (("retry-after", after), ("retry-after-ms", str(math.ceil(seconds * 1000 - 1e-6))))


def request_tokens(body: Mapping[str, Any] | None) -> int:
    """Tokens a request reserves: words of every message content plus ``max_tokens``
    (or ``max_completion_tokens``) when given."""
    if body is None:
        return 0
    messages = body.get("messages")
    words = 0
    if isinstance(messages, list):
        words = sum(word_count(m.get("content")) for m in messages if isinstance(m, dict))
    limit = body.get("max_tokens", body.get("max_completion_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
        words += limit
    return words


@dataclass(frozen=True, slots=True)
class RateVerdict:
    """What the rate limit says about one request: ``allowed``; if not, ``wait_s``
    (seconds until it would pass); ``headers`` to add to whatever answer it gets (the
    ``x-ratelimit-*`` family, and ``Retry-After``/``retry-after-ms`` on a refusal;
    empty when headers are off)."""

    allowed: bool
    wait_s: float
    headers: Headers


class RateLimiter:
    """A request bucket and an optional token bucket, both full at ``now``.

    ``check(tokens, now)`` passes a request only if both buckets have enough (then
    both are charged) and says which headers the answer carries: none without
    ``headers``; with ``retry_after_only``, only ``Retry-After`` (whole seconds) on a
    refusal, like a gateway that tells when but announces no limits.
    """

    __slots__ = (
        "_headers",
        "_requests",
        "_reset_style",
        "_retry_after_only",
        "_retry_style",
        "_tokens",
    )

    def __init__(
        self,
        *,
        rate_per_s: float,
        burst: int,
        now: float,
        token_rate_per_s: float | None = None,
        token_burst: int | None = None,
        headers: bool = True,
        retry_after_style: RetryAfterStyle = "ceil",
        reset_style: ResetStyle = "openai",
        retry_after_only: bool = False,
    ) -> None:
        self._requests = TokenBucket(rate_per_s, burst, now)
        self._retry_after_only = retry_after_only
        self._tokens: TokenBucket | None = None
        if token_rate_per_s is not None:
            size = token_burst if token_burst is not None else max(1, math.ceil(token_rate_per_s))
            self._tokens = TokenBucket(token_rate_per_s, size, now)
        self._headers = headers
        self._retry_style: RetryAfterStyle = retry_after_style
        self._reset_style: ResetStyle = reset_style

    def check(self, tokens: int, now: float) -> RateVerdict:
        """Admit one request that reserves ``tokens`` tokens, or refuse it."""
        wait = self._requests.wait_for(1, now)
        if self._tokens is not None:
            wait = max(wait, self._tokens.wait_for(tokens, now))
        allowed = wait == 0.0
        if allowed:  # both buckets have enough: charge both
            self._requests.take(1, now)
            if self._tokens is not None:
                self._tokens.take(tokens, now)
        if not self._headers:
            return RateVerdict(allowed, wait, ())
        if self._retry_after_only:  # a refusal says when, nothing else does
            return RateVerdict(allowed, wait, () if allowed else retry_after_headers(wait)[:1])
        headers = self._limit_headers(now)
        if not allowed:
            headers = retry_after_headers(wait, self._retry_style) + headers
        return RateVerdict(allowed, wait, headers)

    def _limit_headers(self, now: float) -> Headers:
        out: list[tuple[str, str]] = []
        buckets = [("requests", self._requests)]
        if self._tokens is not None:
            buckets.append(("tokens", self._tokens))
        for name, bucket in buckets:
            out += [
                (f"x-ratelimit-limit-{name}", f"{bucket.capacity:.0f}"),
                (f"x-ratelimit-remaining-{name}", str(max(0, math.floor(bucket.level(now))))),
                (
                    f"x-ratelimit-reset-{name}",
                    format_duration(bucket.until_full(now), self._reset_style),
                ),
            ]
        return tuple(out)

    def __repr__(self) -> str:
        return f"<RateLimiter requests={self._requests!r} tokens={self._tokens!r}>"
