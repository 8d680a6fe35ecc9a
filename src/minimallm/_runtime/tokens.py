"""The token gate: where the request door waits for ``TPM`` (tokens per minute).

One per runtime (``TPM`` is a total for the key, across every endpoint), around the
pure :class:`~minimallm._policy.tokens.TokenBudget`. Before each attempt the door
reserves the request's estimate (:meth:`TokenGate.reserve`, waiting its turn: first come,
first served, so a large request is never overtaken for ever by small ones); after the
attempt it settles the reservation with the answer's ``usage`` (:meth:`TokenGate.settle`),
which also keeps the running average of completions the estimates use, and hands the
server's ``x-ratelimit-*-tokens`` headers to the budget. A settlement that frees room
wakes the waiting caller at once. Plain state in the runtime's trio run; no actor.
"""

from __future__ import annotations

import warnings

import trio

from minimallm._policy.ratelimit import RateLimitInfo
from minimallm._policy.tokens import Reservation, TokenBudget, estimate_tokens
from minimallm._types import MinimaLlmRequest

__all__ = ["TokenGate"]

INITIAL_COMPLETION = 256.0
"""The completion estimate before any answer told the average (tokens)."""


class TokenGate:
    """Reserve before an attempt, settle after it (see the module docstring)."""

    __slots__ = ("_changed", "_completions", "_turn", "average_completion", "budget")

    def __init__(self, tpm: int) -> None:
        self.budget = TokenBudget(tpm)
        self.average_completion = INITIAL_COMPLETION
        self._completions = 0
        self._turn = trio.Lock()  # FIFO: callers reserve in the order they came
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return f"<TokenGate {self.budget!r} avg_completion={self.average_completion:.0f}>"

    def estimate(self, req: MinimaLlmRequest) -> int:
        """``req``'s tokens before it is sent."""
        return estimate_tokens(req.messages, req.max_tokens, req.extra, self.average_completion)

    async def reserve(self, tokens: int) -> Reservation:
        """Wait until ``tokens`` fit in the budget, then count them."""
        budget = self.budget
        async with self._turn:
            while True:
                now = trio.current_time()
                at = budget.ready_at(now, tokens)
                if at <= now:
                    if tokens > budget.budget:
                        warnings.warn(
                            f"a request of ~{tokens} tokens is larger than the token budget "
                            f"({budget.budget}/min): it goes out alone",
                            RuntimeWarning,
                            stacklevel=2,
                        )
                    return budget.reserve(now, tokens)
                changed = self._changed
                with trio.move_on_at(at):
                    await changed.wait()

    def settle(
        self,
        entry: Reservation,
        used: int | None,
        completion: int | None,
        rate: RateLimitInfo | None,
        sent_at: float,
    ) -> None:
        """The attempt that went out at ``sent_at`` is over: it used ``used`` tokens
        (None: unknown, the estimate stands; 0: refused), ``completion`` of them the
        answer's; the server's headers."""
        budget = self.budget
        now = trio.current_time()
        if rate is not None:
            budget.learn(now, rate)
        if completion is not None and completion >= 0:
            self._completions += 1
            weight = max(1 / 64, 1 / self._completions)  # a mean, then a moving one
            self.average_completion += (completion - self.average_completion) * weight
        freed = used is not None and used < entry.tokens
        budget.settle(entry, entry.tokens if used is None else used, sent_at)
        if freed:
            self._changed.set()
            self._changed = trio.Event()
