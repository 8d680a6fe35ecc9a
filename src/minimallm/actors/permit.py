"""Permit: a Worker's permit from the Limiter, and when the Worker gives it back.

The Limiter mints permits into a channel (``actors/limiter.py``). A Worker takes one
before it takes a job and keeps it from one attempt to the next, so only as many
Workers take jobs as the concurrency limit allows. It gives the permit back, by the
report of an attempt (``kept`` False), when the Limiter revoked it (a REVOKE token,
looked at after every attempt, so a job once taken is always sent), or when the
attempt was refused before any attempt of this Worker succeeded (a newcomer that finds
the server full leaves the permit to the Limiter, see ``actors/limiter.py``).

Plain state of one Worker (only the Worker's tasks touch it), not an actor.
"""

from __future__ import annotations

import trio

from minimallm._outcome.attempts import AttemptKind
from minimallm.actors.flags import Revoking

__all__ = ["Permit"]


class Permit:
    """``held``: the Worker holds a permit now."""

    __slots__ = ("_permits", "_revocations", "_revoking", "_through", "held")

    def __init__(
        self,
        permits: trio.MemoryReceiveChannel[object],
        revocations: trio.MemoryReceiveChannel[object],
        revoking: Revoking,
    ) -> None:
        self._permits = permits
        self._revocations = revocations
        self._revoking = revoking
        self._through = False  # an attempt of this Worker succeeded
        self.held = False

    def __repr__(self) -> str:
        return f"<Permit {'held' if self.held else 'none'}>"

    async def take(self) -> None:
        """Wait for a permit (at once if one is idle in the channel)."""
        permits = self._permits
        try:
            permits.receive_nowait()
        except trio.WouldBlock:
            await permits.receive()
        self.held = True

    def settle(self, kind: AttemptKind) -> tuple[bool, bool]:
        """An attempt ended ``kind``: whether the Worker keeps its permit, and whether
        it gives it back because the Limiter revoked it."""
        revoked = self._revoked()
        self._through = self._through or kind == "ok"
        kept = self.held = not revoked and (self._through or kind != "overload")
        return kept, revoked

    def _revoked(self) -> bool:
        """True (and the token taken) if the Limiter asked for a permit back."""
        if not self._revoking.pending:  # no token waits: no look (and no exception)
            return False
        try:
            self._revocations.receive_nowait()
        except trio.WouldBlock:
            return False
        return True
