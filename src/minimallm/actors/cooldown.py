"""Cooldown: after an overload (429/502/503/504) nobody sends until the shared
cooldown deadline has passed.

The rules (growth once per congestion episode, decay, cap, Retry-After) are the pure
:class:`~minimallm._cooldown.CooldownState`; this part of the Admission actor counts
the overloads and answers "when may the next attempt go". Workers' callers report an
overload *before* they give their Worker back, so the next attempt admitted already
sees the new deadline.
"""

from __future__ import annotations

from dataclasses import dataclass

from minimallm._policy import CooldownState

__all__ = ["Cooldown", "CooldownStatistics", "Overload"]


@dataclass(frozen=True, slots=True)
class Overload:
    """A server said it is overloaded at trio time ``at`` (seconds) to an attempt sent
    at ``sent_at``."""

    at: float
    retry_after_s: float | None = None
    sent_at: float | None = None


@dataclass(frozen=True, slots=True)
class CooldownStatistics:
    """The cooldown deadline (trio time, seconds) and how many overloads were seen."""

    deadline: float
    overloads: int


class Cooldown:
    """The shared cooldown deadline. Owned by the Admission actor."""

    __slots__ = ("_state", "overloads")

    def __init__(self, state: CooldownState) -> None:
        self._state = state
        self.overloads = 0

    def __repr__(self) -> str:
        return f"<Cooldown deadline={self._state.deadline():.3f} overloads={self.overloads}>"

    def deadline(self) -> float:
        """Trio time (seconds) before which nobody sends; ``-inf`` before any overload."""
        return self._state.deadline()

    def report(self, overload: Overload) -> None:
        """Fold one overload answer into the state (the deadline never moves back)."""
        self.overloads += 1
        self._state.on_overload(overload.at, overload.retry_after_s, overload.sent_at)

    def statistics(self) -> CooldownStatistics:
        """The current deadline and the overload count."""
        return CooldownStatistics(deadline=self._state.deadline(), overloads=self.overloads)
