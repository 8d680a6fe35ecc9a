"""Worker: one connection, one HTTP attempt at a time.

There are exactly MAX_OUTSTANDING Workers; the Limiter lends one to each admitted
attempt. The attempt runs *in the caller's task* (see ``actors/admission.py`` for
the measured reason), which keeps the guarantees simple:

- ``TIMEOUT_S`` bounds the whole attempt (connect + send + wait + read): one cancel
  scope with that deadline;
- a caller that is cancelled (or whose batch aborts) cancels its own attempt at once,
  and the transport closes the half-used connection on the way out;
- when the runtime stops, :meth:`Worker.stop` cancels the running attempt and its
  caller gets :class:`BackendClosedError`.

``sent_at`` is read from the trio clock just before the request goes to the
transport: failures report these as ``attempt_timestamps``.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from minimallm._attempts import AttemptOutcome
from minimallm._errors import BackendClosedError
from minimallm._transport import (
    TRANSPORT_EXCEPTIONS,
    HttpTransport,
    outcome_from_exception,
    outcome_from_reply,
    timeout_outcome,
)

__all__ = ["Worker"]


class Worker:
    """Owns one transport (one connection); lent to one attempt at a time."""

    __slots__ = ("_scope", "_stopped", "_timeout_s", "_transport", "_wall", "attempts", "sent_at")

    def __init__(
        self, transport: HttpTransport, timeout_s: float, wall_clock: Callable[[], float]
    ) -> None:
        self._transport = transport
        self._timeout_s = timeout_s
        self._wall = wall_clock
        self._scope: trio.CancelScope | None = None
        self._stopped = False
        self.attempts = 0
        self.sent_at = 0.0
        """Trio time (seconds) the current or last attempt was sent."""

    def __repr__(self) -> str:
        busy = " busy" if self._scope is not None else ""
        return f"<Worker{busy} attempts={self.attempts} {self._transport!r}>"

    async def attempt(
        self, headers: tuple[tuple[bytes, bytes], ...], body: bytes
    ) -> AttemptOutcome:
        """One HTTP attempt, bounded by TIMEOUT_S; its outcome (never raises for HTTP
        or transport trouble). Raises BackendClosedError if the runtime stops meanwhile."""
        # A caller cancelled after it was admitted (say, by a batch abort) sends nothing.
        await trio.lowlevel.checkpoint_if_cancelled()
        self.attempts += 1
        self.sent_at = now = trio.current_time()
        with trio.CancelScope(deadline=now + self._timeout_s) as scope:
            self._scope = scope
            try:
                reply = await self._transport.post(headers, body)
            except TRANSPORT_EXCEPTIONS as exc:
                return outcome_from_exception(exc)
            finally:
                self._scope = None
            return outcome_from_reply(reply, wall_clock=self._wall)
        if self._stopped:
            raise BackendClosedError("the minimallm runtime stopped during the request")
        return timeout_outcome(self._timeout_s)

    def stop(self) -> None:
        """The runtime is ending: cancel the running attempt (if any); its caller gets
        BackendClosedError."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()

    async def aclose(self) -> None:
        """Close the connection."""
        await self._transport.aclose()
