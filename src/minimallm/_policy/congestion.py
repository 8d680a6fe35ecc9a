"""Telling sustained overload from sporadic overload answers, and counting episodes.

One :class:`OverloadSignal` is fed with every answer, by the Limiter (the one actor
that sees every attempt): its concurrency controller reads it, and its flow watch
(``_policy/flow.py``) tells the Pacer and the Cooldown of a step of congestion or the
return to calm. The signal is the share of recent answers that were overloads
(429/502/503/504), an exponentially weighted average::

    share <- share + alpha * ((1 if overload else 0) - share)

A server answering 5 % of attempts with 503 keeps ``share`` near 0.05; a server that is
out of capacity or out of quota answers most attempts with overloads and ``share``
climbs past ``threshold``. A burst of ``run`` overload answers in a row (no success in
between) counts at once: a server that refuses everything shows it within a handful of
answers, while random 503s almost never come eight in a row (0.05**8 = 4e-11). Only
then is there *congestion*.

Congestion comes in *steps*, like TCP reacting once per round trip: an overload starts a
new step only if the overloaded attempt was sent *after* the previous step began. The
answers to attempts already in flight when the client reacted belong to the step that
made it react, so 64 simultaneous 429s are one step, not 64. ``depth`` counts the steps
of the current episode: the first step is the client's first reaction (the concurrency
limit drops); a second step means the overload persisted after that reaction (the rate
drops); a third, after that too (the shared pause). The episode ends, and ``depth``
returns to 0, when ``share`` falls below ``calm``.

Pure: no I/O, no clock (``now`` is passed in, seconds).
"""

from __future__ import annotations

import math

__all__ = ["OverloadSignal"]


class OverloadSignal:
    """Share of overload answers and the depth of the current congestion episode."""

    __slots__ = (
        "_alpha",
        "_calm",
        "_run",
        "_run_needed",
        "_step_at",
        "_threshold",
        "depth",
        "share",
        "steps",
    )

    def __init__(
        self,
        *,
        alpha: float = 1 / 64,
        threshold: float = 0.25,
        calm: float = 0.05,
        run: int = 8,
    ) -> None:
        if not (0.0 < alpha <= 1.0 and 0.0 < calm < threshold <= 1.0 and run >= 1):
            raise ValueError(
                "need 0 < alpha <= 1, 0 < calm < threshold <= 1 and run >= 1, got "
                f"alpha={alpha}, calm={calm}, threshold={threshold}, run={run}"
            )
        self._alpha = alpha
        self._run_needed = run
        self._run = 0
        self._threshold = threshold
        self._calm = calm
        self._step_at = -math.inf
        self.share = 0.0
        """Weighted share of overloads among recent answers, in [0, 1]."""
        self.depth = 0
        """Steps in the current congestion episode (0: calm)."""
        self.steps = 0
        """Steps ever seen."""

    def __repr__(self) -> str:
        return f"<OverloadSignal share={self.share:.3f} depth={self.depth} steps={self.steps}>"

    @property
    def congested(self) -> bool:
        """True while an episode is in progress."""
        return self.depth > 0

    def observe(
        self, now: float, sent_at: float, overloaded: bool, *, can_step: bool = True
    ) -> bool:
        """Record one answer (received at ``now`` to an attempt sent at ``sent_at``);
        True when it starts a new step of congestion. ``can_step`` False: the client is
        still carrying out its reaction to the current step (nothing new can be
        learned about it yet), so no new step begins."""
        self.share += self._alpha * ((1.0 if overloaded else 0.0) - self.share)
        if not overloaded:
            self._run = 0
            if self.depth and self.share < self._calm:
                self.depth = 0
            return False
        self._run += 1
        if self._run < self._run_needed and self.share < self._threshold:
            return False
        if sent_at <= self._step_at or not can_step:
            return False
        self._step_at = now
        self.depth += 1
        self.steps += 1
        return True

    def settle(self, now: float) -> None:
        """The reaction to the current step is in force from ``now``: attempts sent
        before belong to the step, even those sent after it began."""
        self._step_at = max(self._step_at, now)

    def started_before_step(self, sent_at: float) -> bool:
        """True when an attempt sent at ``sent_at`` was already out when the current
        step began (its answer belongs to that step)."""
        return sent_at <= self._step_at
