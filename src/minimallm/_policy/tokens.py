"""A token budget: at most TPM tokens per minute, over a sliding 60 s window.

Each attempt *reserves* its estimate (prompt ≈ characters / 4, plus ``max_tokens`` or
the running average of completions: :func:`estimate_tokens`) at the moment it may go;
the answer *settles* the reservation with the tokens it really used (``usage``: prompt +
completion; 0 for an attempt the server refused). An attempt may go at ``now`` when the
reservations and settled amounts of the last 60 s plus its own estimate fit in the
budget; otherwise at the moment enough of them have left the window
(:meth:`TokenBudget.ready_at`). A request larger than the whole budget goes out alone:
once the window is empty, and nothing else goes until it has left the window (it
never waits forever).

The budget is the smaller of ``TPM`` and what the server says it allows
(``x-ratelimit-limit-tokens``); a server that says none are left
(``x-ratelimit-remaining-tokens: 0``) holds every reservation until its
``x-ratelimit-reset-tokens``.

Invariant (property-tested): as long as no settlement exceeds its estimate, the tokens
reserved or used within any 60 s window never exceed the budget, except a lone
oversize request. Pure: no I/O, no clock (``now`` is passed in, seconds).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from minimallm._policy.ratelimit import RateLimitInfo

__all__ = ["WINDOW_S", "Reservation", "TokenBudget", "estimate_tokens"]

WINDOW_S = 60.0
CHARS_PER_TOKEN = 4


def estimate_tokens(
    messages: Sequence[Mapping[str, Any]],
    max_tokens: int | None,
    extra: Mapping[str, Any] | None,
    average_completion: float,
) -> int:
    """A request's tokens, before it is sent: its messages' characters / 4, plus
    ``max_tokens`` (or ``extra["max_completion_tokens"]``/``["max_tokens"]``), else the
    running average of completions."""
    chars = 0
    for message in messages:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):  # content parts: count the text ones
            for part in content:
                if isinstance(part, Mapping) and isinstance(part.get("text"), str):
                    chars += len(part["text"])
    completion: float = average_completion
    for limit in (
        max_tokens,
        (extra or {}).get("max_completion_tokens"),
        (extra or {}).get("max_tokens"),
    ):
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            completion = limit
            break
    return max(1, math.ceil(chars / CHARS_PER_TOKEN + completion))


class Reservation:
    """One attempt's place in the window: when it went and its tokens (the estimate
    until settled)."""

    __slots__ = ("at", "counted", "settled", "tokens")

    def __init__(self, at: float, tokens: int) -> None:
        self.at = at
        self.tokens = tokens
        self.settled = False
        self.counted = True  # in the window (False once 60 s old)

    def __repr__(self) -> str:
        return f"<Reservation {self.tokens} at {self.at:.3f}{' settled' if self.settled else ''}>"


class TokenBudget:
    """Tokens per minute over a sliding window (see the module docstring)."""

    __slots__ = ("_held_until", "_learned", "_sum", "_window", "oversize", "tpm")

    def __init__(self, tpm: int) -> None:
        if tpm <= 0:
            raise ValueError(f"tpm must be > 0, got {tpm!r}")
        self.tpm = tpm
        self._learned: int | None = None  # x-ratelimit-limit-tokens
        self._held_until = -math.inf  # x-ratelimit-remaining-tokens: 0 until the reset
        self._window: deque[Reservation] = deque()
        self._sum = 0
        self.oversize = 0
        """Requests larger than the whole budget sent so far (each alone)."""

    def __repr__(self) -> str:
        return f"<TokenBudget {self._sum}/{self.budget} in the window>"

    @property
    def budget(self) -> int:
        """Tokens a minute: TPM, or less when the server's headers say so."""
        learned = self._learned
        return self.tpm if learned is None else min(self.tpm, learned)

    def in_window(self, now: float) -> int:
        """Tokens reserved or used in the last 60 s."""
        self._expire(now)
        return self._sum

    def _expire(self, now: float) -> None:
        """Drop what left the window, oldest reservation first (one whose send came
        late keeps the ones behind it a little longer: never too early)."""
        window = self._window
        while window and window[0].at <= now - WINDOW_S:
            entry = window.popleft()
            entry.counted = False
            self._sum -= entry.tokens

    def ready_at(self, now: float, tokens: int) -> float:
        """When an attempt of ``tokens`` may go (``now`` if at once)."""
        self._expire(now)
        start = max(now, self._held_until)
        budget = self.budget
        if tokens > budget:  # alone: once everything else has left the window
            return max(start, self._window[-1].at + WINDOW_S) if self._window else start
        excess = self._sum + tokens - budget
        if excess <= 0:
            return start
        leaves = -math.inf
        for entry in self._window:  # oldest first: wait until enough have left
            excess -= entry.tokens
            leaves = max(leaves, entry.at + WINDOW_S)  # (a settled send time may be later)
            if excess <= 0:
                return max(start, leaves)
        return start  # unreachable: the whole window leaving makes room

    def reserve(self, now: float, tokens: int) -> Reservation:
        """Count ``tokens`` from ``now`` (call when :meth:`ready_at` says ``now``)."""
        if tokens > self.budget:
            self.oversize += 1
        entry = Reservation(now, tokens)
        self._window.append(entry)
        self._sum += tokens
        return entry

    def settle(self, entry: Reservation, tokens: int, sent_at: float | None = None) -> None:
        """The attempt used ``tokens`` (its answer's usage; 0 if refused), and went out
        at ``sent_at`` (it waited for a Worker after its reservation: the server counts
        it from then, so it counts from then here too)."""
        tokens = max(0, tokens)
        if entry.counted:  # still in the window
            self._sum += tokens - entry.tokens
            if sent_at is not None and sent_at > entry.at:
                entry.at = sent_at  # leaves the window later (expiry: see _expire)
        entry.tokens = tokens
        entry.settled = True

    def learn(self, now: float, info: RateLimitInfo) -> None:
        """The server's word on its token limit (an answer's ``x-ratelimit-*-tokens``)."""
        if info.limit_tokens is not None and info.limit_tokens > 0:
            self._learned = info.limit_tokens
        if info.remaining_tokens == 0 and info.reset_tokens_s is not None:
            self._held_until = max(self._held_until, now + info.reset_tokens_s)
