"""What one HTTP attempt is and what it ends as: the messages between the caller and
the actors.

An :class:`AttemptJob` travels Limiter → Cooldown gate → Pacer → Worker through trio
memory channels. Its :class:`AttemptReply` is the one-shot rendezvous the caller waits
on; it is also how a caller that goes away (cancellation, batch abort) tells the
Worker to stop that attempt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

import trio

__all__ = ["AttemptError", "AttemptJob", "AttemptOutcome", "AttemptReply", "AttemptSuccess"]


@dataclass(frozen=True, slots=True)
class AttemptSuccess:
    """A 2xx answer whose ``choices[0].message.content`` is a string."""

    text: str
    raw: Mapping[str, Any]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Anything else. ``retryable`` and ``overload`` are decided once, where the
    outcome is made (``_transport``), from the policy tables."""

    error_type: str
    message: str
    retryable: bool
    overload: bool = False
    status: int | None = None
    body_snippet: str | None = None
    retry_after_s: float | None = None


AttemptOutcome: TypeAlias = AttemptSuccess | AttemptError


class AttemptReply:
    """One-shot slot for an attempt's outcome, plus the caller's cancel switch."""

    __slots__ = ("_done", "_scope", "abandoned", "outcome", "sent_at")

    def __init__(self) -> None:
        self._done = trio.Event()
        self._scope: trio.CancelScope | None = None
        self.abandoned = False
        self.outcome: AttemptOutcome | None = None
        self.sent_at: float | None = None

    def __repr__(self) -> str:
        state = "done" if self._done.is_set() else "abandoned" if self.abandoned else "pending"
        return f"<AttemptReply {state} sent_at={self.sent_at}>"

    # -- worker side -------------------------------------------------------------
    def bind_scope(self, scope: trio.CancelScope) -> None:
        """The Worker registers the scope of the running attempt (so abandon() stops it)."""
        self._scope = scope
        if self.abandoned:
            scope.cancel()

    def resolve(self, outcome: AttemptOutcome | None) -> None:
        """Deliver the outcome (None: the attempt never ran). Idempotent."""
        if not self._done.is_set():
            self.outcome = outcome
            self._done.set()

    # -- caller side -------------------------------------------------------------
    async def wait(self) -> AttemptOutcome | None:
        """Wait for the outcome; None when the runtime dropped the attempt unrun."""
        await self._done.wait()
        return self.outcome

    def abandon(self) -> None:
        """The caller went away: skip the attempt if not started, cancel it if running."""
        self.abandoned = True
        if self._scope is not None:
            self._scope.cancel()


@dataclass(frozen=True, slots=True)
class AttemptJob:
    """One HTTP attempt to make: the encoded body and headers, and where to answer."""

    body: bytes
    headers: tuple[tuple[bytes, bytes], ...]
    reply: AttemptReply
