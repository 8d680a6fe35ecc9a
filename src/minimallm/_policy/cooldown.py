"""The shared cooldown's arithmetic: how long a pause lasts, and its memory.

:class:`CooldownState` holds a decaying level and a deadline before which nobody sends;
*when* to pause is decided by :mod:`minimallm._policy.pause` (sustained overload only,
never sporadic overload answers), and the Cooldown actor
(:mod:`minimallm.actors.cooldown`) tells the Pacer. Nothing here does I/O, sleeps,
reads a clock or imports trio: the caller passes ``now`` in seconds on its own clock.
"""

from __future__ import annotations

import math

__all__ = ["CooldownState"]


def _check_seconds(name: str, value: float, *, allow_inf: bool = False) -> None:
    if not (value >= 0.0 and (allow_inf or math.isfinite(value))):  # also rejects NaN
        kind = "number" if allow_inf else "finite number"
        raise ValueError(f"{name} must be a {kind} >= 0 seconds, got {value!r}")


class CooldownState:
    """The shared pause after sustained overload: a deadline that expires.

    The state is a cooldown *level* ``L`` (seconds) stamped at time ``t0``, which decays
    with half-life ``halflife_s``, and a *deadline* before which the gate is closed::

        level(now) = L * 0.5 ** ((now - t0) / halflife_s)

    A pause at ``now`` (:meth:`pause`), with the server's Retry-After ``ra`` or without::

        ra given:           L = min(cap_s, max(floor_s, ra))          the server's word sets it
        persisted:          L = min(cap_s, max(floor_s, initial_s, 2 * level(now)))
        otherwise:          L = min(cap_s, max(floor_s, initial_s, level(now)))
        t0 = now;  deadline = max(deadline, now + L)

    *Persisted* means the overload outlasted a pause (the probe sent after it was
    refused too): only then does the level double. Quiet periods let it decay back
    towards zero; the deadline never moves backwards; and the gate is open again at most
    ``cap_s`` after the last pause began, unlike a tax that never reaches zero.
    ``floor_s`` may be 0; if ``floor_s`` or ``initial_s`` exceed ``cap_s``, ``cap_s``
    wins. ``halflife_s = 0`` forgets the level at once; ``math.inf`` never forgets.
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

    def pause(
        self, now: float, *, retry_after_s: float | None = None, persisted: bool = False
    ) -> float:
        """Begin a pause at ``now``; returns the deadline (seconds). See the class doc."""
        if retry_after_s is not None:
            level = min(self._cap_s, max(self._floor_s, retry_after_s))
        else:
            grown = 2.0 * self.level(now) if persisted else self.level(now)
            level = min(self._cap_s, max(self._floor_s, self._initial_s, grown))
        self._level = level
        self._t0 = now
        self._deadline = max(self._deadline, now + level)
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
