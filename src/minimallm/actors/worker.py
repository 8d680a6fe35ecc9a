"""Worker: makes HTTP attempts on its own single connection.

There are exactly MAX_OUTSTANDING workers. Each attempt runs inside a cancel scope
bound to the job's reply (the caller can stop it) and under ``move_on_after(TIMEOUT_S)``
(the timeout bounds the whole attempt: connect + send + wait + read). When the attempt
ends, the Worker reports an overload to the cooldown gate (if any), answers the
caller, and returns its token to the Limiter — in that order, so the next job admitted
already sees the cooldown.
"""

from __future__ import annotations

from collections.abc import Callable

import trio

from minimallm._attempts import AttemptError, AttemptJob, AttemptOutcome
from minimallm._transport import (
    TRANSPORT_EXCEPTIONS,
    HttpTransport,
    outcome_from_exception,
    outcome_from_reply,
    timeout_outcome,
)
from minimallm.actors.cooldown import Overload

__all__ = ["Worker"]


class Worker:
    """One connection, one attempt at a time."""

    __slots__ = (
        "_attempts",
        "_inbox",
        "_overloads",
        "_timeout_s",
        "_tokens",
        "_transport",
        "_wall",
    )

    def __init__(
        self,
        transport: HttpTransport,
        timeout_s: float,
        inbox: trio.MemoryReceiveChannel[AttemptJob],
        tokens: trio.MemorySendChannel[None],
        overloads: trio.MemorySendChannel[Overload],
        wall_clock: Callable[[], float],
    ) -> None:
        self._transport = transport
        self._timeout_s = timeout_s
        self._inbox = inbox
        self._tokens = tokens
        self._overloads = overloads
        self._wall = wall_clock
        self._attempts = 0

    def __repr__(self) -> str:
        return f"<Worker attempts={self._attempts} {self._transport!r}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve jobs until the inbox closes; close the connection on the way out."""
        try:
            async with self._inbox, self._tokens, self._overloads:
                task_status.started()
                async for job in self._inbox:
                    try:
                        outcome = None if job.reply.abandoned else await self._attempt(job)
                        if isinstance(outcome, AttemptError) and outcome.overload:
                            # Buffered to MAX_OUTSTANDING, one report per attempt in
                            # flight, drained before each admission: never blocks.
                            self._overloads.send_nowait(
                                Overload(
                                    trio.current_time(), outcome.retry_after_s, job.reply.sent_at
                                )
                            )
                        job.reply.resolve(outcome)
                    finally:
                        # Buffered to MAX_OUTSTANDING: at most that many tokens are out,
                        # so this never blocks.
                        self._tokens.send_nowait(None)
        finally:
            with trio.CancelScope(shield=True):
                await self._transport.aclose()

    async def _attempt(self, job: AttemptJob) -> AttemptOutcome | None:
        self._attempts += 1
        with trio.CancelScope() as caller_scope:
            job.reply.bind_scope(caller_scope)
            with trio.move_on_after(self._timeout_s) as timeout_scope:
                job.reply.sent_at = trio.current_time()
                try:
                    reply = await self._transport.post(job.headers, job.body)
                except TRANSPORT_EXCEPTIONS as exc:
                    return outcome_from_exception(exc)
                return outcome_from_reply(reply, wall_clock=self._wall)
            if timeout_scope.cancelled_caught:
                return timeout_outcome(self._timeout_s)
        return None  # the caller abandoned the attempt
