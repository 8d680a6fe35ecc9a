"""Limiter: how many HTTP attempts may be in flight — never more than MAX_OUTSTANDING,
and fewer when the server has shown it takes fewer (:mod:`minimallm._policy.concurrency`).

Permits are items in a channel. A Worker takes one with ``receive_nowait()`` before it
sends (no task switch while one is ready) and waits on the channel only when none is.
The permit comes back *through the Limiter*: the Worker's :class:`AttemptReport` is
the return, so the Limiter sees every attempt (what its controller learns from) and can
shrink the pool without racing the Workers for permits. It drains its whole inbox per
wake-up, so at high rates it wakes once per burst of answers, not once per answer.

Being the one actor that sees every attempt, it also sums them up for the others
(:mod:`minimallm._policy.flow`): a step of congestion or the return to calm, and a
server that stopped or started answering, go to the Pacer and the Cooldown as
:class:`CongestionEvent` and :class:`ReachEvent` — rare messages, so a healthy client
sends those two actors nothing.

Invariant: permits in the channel + permits held by Workers <= the limit <= cap. When
the limit falls, idle permits are taken back from the channel at once and returned
ones are not re-issued until the count is below the limit again.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import trio

from minimallm._policy.concurrency import ConcurrencyControl
from minimallm._policy.flow import CongestionEvent, FlowWatch, ReachEvent
from minimallm.actors.messages import PERMIT, AttemptReport, PermitBack

__all__ = ["Limiter", "LimiterStatistics"]

LimiterMessage = AttemptReport | PermitBack


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """The Limiter now: ``limit`` (of ``cap``), permits ``held`` by Workers, Workers
    ``waiting`` for one, whether the limit was ``learned`` from the server (below the
    cap) or is ``frozen`` after an overload, and the smoothed success latency (s)."""

    limit: int
    cap: int
    held: int
    waiting: int
    learned: bool
    frozen: bool
    srtt_s: float | None
    decreases: int


class Limiter:
    """Actor owning the concurrency limit and the permits."""

    __slots__ = (
        "_control",
        "_existing",
        "_inbox",
        "_listeners",
        "_permits_in",
        "_permits_out",
        "_watch",
    )

    def __init__(
        self,
        control: ConcurrencyControl,
        inbox: trio.MemoryReceiveChannel[LimiterMessage],
        permits: tuple[trio.MemorySendChannel[object], trio.MemoryReceiveChannel[object]],
        listeners: tuple[trio.MemorySendChannel[Any], ...] = (),
    ) -> None:
        self._control = control
        self._watch = FlowWatch(control.signal)
        self._inbox = inbox
        self._permits_in, self._permits_out = permits
        self._listeners = listeners  # the Pacer's and the Cooldown's inboxes
        self._existing = 0  # permits in the channel + permits Workers hold

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Limiter limit={s.limit}/{s.cap} held={s.held} waiting={s.waiting}>"

    def _idle(self) -> int:
        return self._permits_in.statistics().current_buffer_used

    def statistics(self) -> LimiterStatistics:
        """A frozen snapshot (safe to call from any task of the same run)."""
        c = self._control
        return LimiterStatistics(
            limit=c.limit,
            cap=c.cap,
            held=self._existing - self._idle(),
            waiting=self._permits_out.statistics().tasks_waiting_receive,
            learned=c.learned,
            frozen=c.frozen,
            srtt_s=c.srtt_s,
            decreases=c.decreases,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Issue permits; take them back with each report; adapt the limit."""
        self._issue()
        task_status.started()
        inbox = self._inbox
        while True:
            with trio.move_on_at(self._control.wake_at()):
                try:
                    message = await inbox.receive()
                except trio.EndOfChannel:
                    return
                self._handle(message)
                while True:
                    try:
                        message = inbox.receive_nowait()
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                    self._handle(message)
            self._control.tick(trio.current_time(), self._existing - self._idle())
            self._issue()

    def _handle(self, message: LimiterMessage) -> None:
        self._existing -= 1  # the permit is back with us
        if not isinstance(message, AttemptReport):
            return
        if message.answered:
            others = self._existing - self._idle()
            self._control.on_answer(
                message.done_at, message.sent_at, message.kind == "overload", others
            )
        for event in self._watch.observe(message.done_at, message.sent_at, message.kind):
            self._tell(event)

    def _tell(self, event: CongestionEvent | ReachEvent) -> None:
        for listener in self._listeners:
            with contextlib.suppress(trio.WouldBlock):  # a starved inbox: the next one counts
                listener.send_nowait(event)

    def _issue(self) -> None:
        """Bring the permits in existence to the limit (idle ones only while frozen)."""
        idle = self._idle()
        held = self._existing - idle
        want = held if self._control.frozen else self._control.limit
        while self._existing > want and idle > 0:
            try:
                self._permits_out.receive_nowait()
            except trio.WouldBlock:
                break
            idle -= 1
            self._existing -= 1
        while self._existing < want:
            self._permits_in.send_nowait(PERMIT)
            self._existing += 1
