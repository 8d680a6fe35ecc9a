"""Pure cooldown core: the shared back-off after overload answers (429/502/503/504).

One :class:`CooldownState` per runtime holds a decaying level and a deadline before
which no attempt is sent; the actor in :mod:`minimallm.actors.cooldown` wraps it and
does the waiting. Like every core in :mod:`minimallm._policy` (which re-exports it),
nothing here does I/O, sleeps, reads a clock or imports trio: the caller passes
``now`` in seconds on its own clock.
"""

from __future__ import annotations

import math

__all__ = ["CooldownState"]


def _check_seconds(name: str, value: float, *, allow_inf: bool = False) -> None:
    if not (value >= 0.0 and (allow_inf or math.isfinite(value))):  # also rejects NaN
        kind = "number" if allow_inf else "finite number"
        raise ValueError(f"{name} must be a {kind} >= 0 seconds, got {value!r}")


class CooldownState:
    """Shared back-off after overload (429/502/503/504): a deadline that expires.

    The state is a cooldown *level* ``L`` (seconds) stamped at time ``t0``, which decays
    with half-life ``halflife_s``, and a *deadline* before which the gate is closed::

        level(now) = L * 0.5 ** ((now - t0) / halflife_s)

    On an overload at ``now`` for an attempt sent at ``sent`` (optionally with the
    server's Retry-After ``ra``)::

        if sent is None or sent > t0:                  # a new congestion episode
            L        = min(cap_s, max(floor_s, initial_s, 2 * level(now)))
            t0       = now
            deadline = max(deadline, now + L)
        if ra is given:
            deadline = max(deadline, now + min(ra, cap_s))

    An attempt sent before the last growth (``sent <= t0``) was already in flight when
    the cooldown began: its overload is the same episode, so 64 simultaneous 429s grow
    the level once, not 64 times (TCP reacts once per round trip for the same reason).
    A Retry-After moves the deadline but not the level: it is the server's word about
    now, not evidence that our own pauses are too short.

    Hence overloads that persist after a pause double the cooldown up to ``cap_s``;
    quiet periods let it decay back towards zero; the deadline never moves backwards;
    and the gate is
    open again (``remaining == 0``) at most ``cap_s`` after the last overload, unlike a
    tax that never reaches zero. ``floor_s`` may be 0; if ``floor_s`` or ``initial_s``
    exceed ``cap_s``, ``cap_s`` wins. ``halflife_s = 0`` forgets the level at once
    (every overload starts again from ``initial_s``); ``math.inf`` never forgets.

    Times are seconds on the caller's clock (``trio.current_time()``); nothing here
    reads a clock.
    """

    __slots__ = ("_cap_s", "_deadline", "_floor_s", "_halflife_s", "_initial_s", "_level", "_t0")

    def __init__(
        self, *, floor_s: float, cap_s: float, halflife_s: float, initial_s: float
    ) -> None:
        _check_seconds("floor_s", floor_s)
        _check_seconds("cap_s", cap_s)
        _check_seconds("halflife_s", halflife_s, allow_inf=True)
        _check_seconds("initial_s", initial_s)
        self._floor_s = floor_s
        self._cap_s = cap_s
        self._halflife_s = halflife_s
        self._initial_s = initial_s
        self._level = 0.0
        self._t0 = -math.inf
        self._deadline = -math.inf

    def level(self, now: float) -> float:
        """The current cooldown length in seconds, decayed to ``now`` (0 before any overload)."""
        if self._level == 0.0:
            return 0.0
        elapsed = max(0.0, now - self._t0)
        if elapsed == 0.0:
            return self._level
        if self._halflife_s == 0.0:
            return 0.0
        decay: float = 0.5 ** (elapsed / self._halflife_s)
        return self._level * decay

    def on_overload(
        self, now: float, retry_after_s: float | None = None, sent_at: float | None = None
    ) -> float:
        """Record an overload answer received at ``now``; return the new deadline (seconds).

        ``sent_at`` is when the overloaded attempt was sent (None: unknown, counts as a
        new episode); ``retry_after_s`` is the server's parsed Retry-After, if any: the
        gate stays closed at least ``min(retry_after_s, cap_s)`` from ``now``.
        """
        if sent_at is None or sent_at > self._t0:
            level = min(self._cap_s, max(self._floor_s, self._initial_s, 2.0 * self.level(now)))
            self._level = level
            self._t0 = now
            self._deadline = max(self._deadline, now + level)
        if retry_after_s is not None:
            self._deadline = max(self._deadline, now + min(retry_after_s, self._cap_s))
        return self._deadline

    def deadline(self) -> float:
        """The moment (seconds) the gate opens; closed while ``now < deadline()``.

        ``-inf`` before any overload, so the gate starts open on any clock.
        """
        return self._deadline

    def remaining(self, now: float) -> float:
        """Seconds until the gate opens, ``max(0, deadline - now)``."""
        return max(0.0, self._deadline - now)

    def __repr__(self) -> str:
        return (
            f"<CooldownState level={self._level:.3f}s at t0={self._t0:.3f}"
            f" deadline={self._deadline:.3f} floor_s={self._floor_s} cap_s={self._cap_s}"
            f" halflife_s={self._halflife_s} initial_s={self._initial_s}>"
        )
