"""Two flags an actor shows the Workers of its endpoint, read before or after every
attempt without a checkpoint.

Each is plain state with one writer, read by the Workers in the same trio run: an
honest shared flag (trio-util's ``AsyncValue`` without the waiting: nobody waits on
it). They replace what a Worker used to do through a channel on every attempt, each
~4-5k CPU instructions per attempt at latency 0:

- :class:`SendGate` (the Pacer writes it): open, a Worker sends at once (no message, no
  task switch, the Pacer not involved); shut (RPM, a learned rate, a hold), it asks
  the Pacer for a slot (:class:`~minimallm.actors.messages.WantSlot`). It replaces a
  baton taken from a channel and put straight back.
- :class:`Revoking` (the Limiter writes it): set while the Limiter has asked for
  permits back (:data:`~minimallm.actors.messages.REVOKE` tokens may wait in the
  revocation channel), so a Worker looks in that channel after an attempt only then
  instead of after every attempt (an empty channel answers with an exception). The
  tokens themselves stay in the channel: who gives a permit back is still decided by
  taking one.
"""

from __future__ import annotations

__all__ = ["Revoking", "SendGate"]


class SendGate:
    """``open``: attempts go out without asking the Pacer (written by the Pacer only)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = False

    def __repr__(self) -> str:
        return f"<SendGate {'open' if self.open else 'shut'}>"


class Revoking:
    """``pending``: revocations asked for and not yet answered (written by the Limiter
    only); while False the revocation channel is empty."""

    __slots__ = ("pending",)

    def __init__(self) -> None:
        self.pending = False

    def __repr__(self) -> str:
        return f"<Revoking pending={self.pending}>"
