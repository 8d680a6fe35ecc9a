"""Worker: one connection, one HTTP attempt at a time; and the Watchdog that ends
attempts which outlive TIMEOUT_S.

There are exactly MAX_OUTSTANDING Workers; the Limiter lends one to each admitted
attempt. The attempt runs *in the caller's task* (see ``actors/admission.py`` for
the measured reason), which keeps the guarantees simple:

- ``TIMEOUT_S`` bounds the whole attempt (connect + send + wait + read);
- a caller that is cancelled (or whose batch aborts) cancels its own attempt at once,
  and the transport closes the half-used connection on the way out;
- when the runtime stops, :meth:`Worker.stop` ends the running attempt and its
  caller gets :class:`BackendClosedError`.

How TIMEOUT_S is enforced. A transport that can be *interrupted* from another task
(the project's HTTP client: ``interrupt()`` closes its socket, which wakes the
waiting caller with an error) is watched by the :class:`Watchdog` actor, which sleeps
until the earliest deadline of the attempts in flight and interrupts the overdue
ones. Any other transport (the test fakes) runs under ``CancelScope(deadline=…)``.
Why not always the cancel scope: in trio 0.35 entering and leaving one costs ~57
Python calls, measured at 15-18 µs of CPU per attempt against the mock server (about
12% of minimallm's whole request path); the watchdog costs one comparison per attempt
and wakes about once per TIMEOUT_S.

``sent_at`` is read from the trio clock just before the request goes to the
transport: failures report these as ``attempt_timestamps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

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

__all__ = ["Watchdog", "Worker"]


class Watchdog:
    """Interrupts attempts still running at their deadline (trio time, seconds)."""

    __slots__ = ("_alarm", "_planned", "_workers", "expired")

    def __init__(self) -> None:
        self._workers: tuple[Worker, ...] = ()
        self._planned = math.inf  # when run() wakes by itself
        self._alarm = trio.Event()
        self.expired = 0

    def __repr__(self) -> str:
        return f"<Watchdog next={self._planned:.3f} expired={self.expired}>"

    def watch(self, workers: Sequence[Worker]) -> None:
        """The Workers whose attempts to watch (set once, before :meth:`run`)."""
        self._workers = tuple(workers)

    def attempt_started(self, deadline: float) -> None:
        """A watched attempt began. Deadlines only grow (same TIMEOUT_S for all), so
        this wakes the actor only when it had nothing to watch."""
        if deadline < self._planned:
            self._alarm.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Sleep until the earliest deadline in flight; interrupt what is overdue."""
        task_status.started()
        while True:
            now = trio.current_time()
            planned = math.inf
            for worker in self._workers:
                deadline = worker.deadline
                if deadline <= now:
                    self.expired += 1
                    worker.expire()
                elif deadline < planned:
                    planned = deadline
            self._planned = planned
            with trio.move_on_at(planned):
                await self._alarm.wait()
            if self._alarm.is_set():
                self._alarm = trio.Event()


class Worker:
    """Owns one transport (one connection); lent to one attempt at a time."""

    __slots__ = (
        "_expired",
        "_interrupt",
        "_scope",
        "_stopped",
        "_timeout_s",
        "_transport",
        "_wall",
        "_watchdog",
        "attempts",
        "deadline",
        "sent_at",
    )

    def __init__(
        self,
        transport: HttpTransport,
        timeout_s: float,
        wall_clock: Callable[[], float],
        watchdog: Watchdog | None = None,
    ) -> None:
        self._transport = transport
        self._timeout_s = timeout_s
        self._wall = wall_clock
        self._watchdog = watchdog
        interrupt: Callable[[], None] | None = getattr(transport, "interrupt", None)
        self._interrupt = interrupt if watchdog is not None else None
        self._scope: trio.CancelScope | None = None
        self._stopped = False
        self._expired = False
        self.attempts = 0
        self.sent_at = 0.0
        """Trio time (seconds) the current or last attempt was sent."""
        self.deadline = math.inf
        """Trio time (seconds) the watched attempt in flight must end by; inf if none."""

    def __repr__(self) -> str:
        busy = " busy" if self.deadline < math.inf or self._scope is not None else ""
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
        if self._interrupt is None:
            return await self._attempt_in_scope(headers, body, now + self._timeout_s)
        assert self._watchdog is not None
        self._expired = False
        self.deadline = deadline = now + self._timeout_s
        self._watchdog.attempt_started(deadline)
        try:
            reply = await self._transport.post(headers, body)
        except TRANSPORT_EXCEPTIONS as exc:
            if self._stopped:
                raise BackendClosedError(
                    "the minimallm runtime stopped during the request"
                ) from exc
            return (
                timeout_outcome(self._timeout_s) if self._expired else outcome_from_exception(exc)
            )
        finally:
            self.deadline = math.inf
        return outcome_from_reply(reply, wall_clock=self._wall)

    async def _attempt_in_scope(
        self, headers: tuple[tuple[bytes, bytes], ...], body: bytes, deadline: float
    ) -> AttemptOutcome:
        with trio.CancelScope(deadline=deadline) as scope:
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

    def expire(self) -> None:
        """The watched attempt passed its deadline: interrupt it (it ends as a timeout)."""
        self._expired = True
        if self._interrupt is not None:
            self._interrupt()

    def stop(self) -> None:
        """The runtime is ending: end the running attempt (if any); its caller gets
        BackendClosedError."""
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()
        if self.deadline < math.inf and self._interrupt is not None:
            self._interrupt()

    async def aclose(self) -> None:
        """Close the connection."""
        await self._transport.aclose()
