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

*Refusals that do not depend on the load.* Some servers refuse a share of requests
whatever the client does (every other answer, 20-50 % at random: a flaky gateway, a
shared upstream). Backing off does not lower that share, it only lowers goodput. When
the client has backed off and the share stayed (:mod:`minimallm._policy.flow` judges
it), :meth:`OverloadSignal.tolerate` makes that share the *floor*: from then on only
overload well above it is congestion::

    threshold' = max(threshold, floor + max(0.25, (1 - floor) / 2))
    run'       = max(run, ceil(log(1e-5) / log(floor)))      (a run that rare by chance)
    calm'      = floor + calm

The floor follows the share down slowly (``alpha / 8`` per clean answer: a server that
stops refusing is judged by the ordinary rules again after some hundreds of answers),
never up: only a judgement raises it.

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
        "_calm_now",
        "_run",
        "_run_needed",
        "_run_now",
        "_step_at",
        "_threshold",
        "_threshold_now",
        "depth",
        "floor",
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
        self.floor = 0.0
        """The share of overloads that does not depend on the load (0: none known)."""
        self._threshold_now = threshold
        self._run_now = run
        self._calm_now = calm
        self._step_at = -math.inf
        self.share = 0.0
        """Weighted share of overloads among recent answers, in [0, 1]."""
        self.depth = 0
        """Steps in the current congestion episode (0: calm)."""
        self.steps = 0
        """Steps ever seen."""

    def __repr__(self) -> str:
        return f"<OverloadSignal share={self.share:.3f} depth={self.depth} steps={self.steps}>"

    def observe(self, now: float, sent_at: float, overloaded: bool, can_step: bool = True) -> bool:
        """Record one answer (received at ``now`` to an attempt sent at ``sent_at``);
        True when it starts a new step of congestion. ``can_step`` False: the client is
        still carrying out its reaction to the current step (nothing new can be
        learned about it yet), so no new step begins."""
        self.share += self._alpha * ((1.0 if overloaded else 0.0) - self.share)
        if not overloaded:
            self._run = 0
            if self.floor and self.share < self.floor:  # follow the share down, slowly
                self._set_floor(self.floor - self._alpha / 8 * (self.floor - self.share))
            if self.depth and self.share < self._calm_now:
                self.depth = 0
            return False
        self._run += 1
        if self._run < self._run_now and self.share < self._threshold_now:
            return False
        if sent_at <= self._step_at or not can_step:
            return False
        self._step_at = now
        self.depth += 1
        self.steps += 1
        return True

    def calm_success(self) -> None:
        """:meth:`observe` of a success while calm (no episode, no floor), where it only
        moves the share down and ends a run of overloads (the same share, to the bit)."""
        share = self.share
        if share:
            self.share = share - self._alpha * share
        self._run = 0

    def tolerate(self, share: float) -> None:
        """Overloads at ``share`` (in [0, 1)) came whatever the load: make it the floor
        and end the episode (see the module docstring)."""
        self._set_floor(max(self.floor, min(0.95, share)))
        self.depth = 0
        self._run = 0

    def _set_floor(self, floor: float) -> None:
        self.floor = floor = max(0.0, floor)
        if floor < 0.01:
            self.floor = 0.0
            self._threshold_now, self._run_now, self._calm_now = (
                self._threshold,
                self._run_needed,
                self._calm,
            )
            return
        self._threshold_now = max(self._threshold, floor + max(0.25, (1.0 - floor) / 2))
        self._run_now = max(self._run_needed, math.ceil(math.log(1e-5) / math.log(floor)))
        self._calm_now = floor + self._calm

    def settle(self, now: float) -> None:
        """The reaction to the current step is in force from ``now``: attempts sent
        before belong to the step, even those sent after it began."""
        self._step_at = max(self._step_at, now)
