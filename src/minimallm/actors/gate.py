"""SendGate: whether one endpoint's attempts may go out at once (neither paced nor held).

Plain state with one writer, the endpoint's Pacer, read by the endpoint's Workers
before every attempt, all in one trio run: an honest shared flag (trio-util's
``AsyncValue`` without the waiting: nobody waits on it). Open, a Worker sends at once:
no message, no task switch, the Pacer not involved. Shut (RPM, a learned rate, a hold),
a Worker asks the Pacer for a slot (:class:`~minimallm.actors.messages.WantSlot`) and
waits for it. Reading one attribute costs a fraction of what taking a baton from a
channel and putting it back did (~5k CPU instructions per attempt at latency 0).
"""

from __future__ import annotations

__all__ = ["SendGate"]


class SendGate:
    """``open``: attempts go out without asking the Pacer (written by the Pacer only)."""

    __slots__ = ("open",)

    def __init__(self) -> None:
        self.open = False

    def __repr__(self) -> str:
        return f"<SendGate {'open' if self.open else 'shut'}>"
