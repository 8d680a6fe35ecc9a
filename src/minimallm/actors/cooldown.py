"""Cooldown: decides when *everyone* stops sending — a shared pause after sustained
overload, an outage — and tells the Pacer (:class:`Hold` / :class:`Release`).

The decisions are the pure :class:`~minimallm._policy.pause.PauseControl`; this actor
feeds it what it hears — overload answers and every probe's outcome from the Workers
(with several endpoints also every attempt that found no server),
steps of congestion and the server's reachability from the Limiter (drained in bulk per
wake-up) — wakes at the moments it asks for (a lost probe, an outage's budget), and
forwards its decisions. It never holds a permit or a slot itself: a hold closes the
Pacer's gate, and the Pacer lets one probe through when the hold ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import trio

from minimallm._policy.flow import CongestionEvent, ReachEvent
from minimallm._policy.pause import PauseControl, PauseDecision
from minimallm.actors._inbox import receive_burst
from minimallm.actors.messages import AttemptReport, Hold, Release

__all__ = ["Cooldown", "CooldownMessage", "CooldownStatistics"]

CooldownMessage = AttemptReport | CongestionEvent | ReachEvent


class CooldownStatistics(NamedTuple):
    """The Cooldown now: the shared deadline (trio time, s; ``-inf`` before any pause),
    the level (s), why the client is held (``cooldown``, ``outage`` or None), since
    when an outage lasts, overload answers heard and pauses so far, and the server's
    Retry-After (s) that set the current pause, if one did."""

    deadline: float
    level_s: float
    holding: str | None
    outage_since: float | None
    overloads: int
    pauses: int
    asked_s: float | None = None


class Cooldown:
    """Actor owning the shared pause."""

    __slots__ = ("_control", "_inbox", "_others_up", "_overloads", "_pacer")

    def __init__(
        self,
        control: PauseControl,
        inbox: trio.MemoryReceiveChannel[CooldownMessage],
        pacer: trio.MemorySendChannel[Hold | Release],
        others_up: Callable[[], bool] | None = None,
    ) -> None:
        """``others_up``: several endpoints: is another one up (not in an outage) now?
        An outage is not given up while one is."""
        self._control = control
        self._others_up = others_up
        self._inbox = inbox
        self._pacer = pacer
        self._overloads = 0

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Cooldown holding={s.holding} pauses={s.pauses} overloads={s.overloads}>"

    def statistics(self) -> CooldownStatistics:
        """A frozen snapshot (safe to call from any task of the same run)."""
        c = self._control
        now = trio.current_time()
        return CooldownStatistics(
            deadline=c.cooldown.deadline(),
            level_s=c.cooldown.level(now),
            holding=c.holding,
            outage_since=c.outage_since,
            overloads=self._overloads,
            pauses=c.pauses,
            asked_s=c.asked_s,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Watch every attempt; hold and release the Pacer; until the inbox closes."""
        task_status.started()
        inbox = self._inbox
        while True:
            decision: PauseDecision | None = None  # the latest one of a burst wins
            burst = await receive_burst(inbox, self._control.wake_at())
            if burst is None:
                return
            for message in burst:
                decision = self._handle(message) or decision
            others_up = self._others_up is not None and self._others_up()
            decision = self._control.tick(trio.current_time(), others_up=others_up) or decision
            await self._tell(decision)

    def _handle(self, message: CooldownMessage) -> PauseDecision | None:
        control = self._control
        if isinstance(message, CongestionEvent):
            return control.on_congestion(
                message.at, message.floor_depth, independent=message.independent
            )
        if isinstance(message, ReachEvent):
            return control.on_reach(message.at, message.reachable)
        kind = message.kind
        if kind == "overload":
            self._overloads += 1
        others_up = (
            kind in ("unreachable", "timeout") and self._others_up is not None and self._others_up()
        )
        return control.on_attempt(
            message.done_at,
            kind,
            retry_after_s=message.retry_after_s,
            exhausted=message.rate is not None and message.rate.exhausted,
            probe=message.probe is not None,
            gone=message.upstream_gone,
            others_up=others_up,
        )

    async def _tell(self, decision: PauseDecision | None) -> None:
        if decision is None:
            return
        message: Hold | Release
        if decision.hold:
            message = Hold(decision.until, True, decision.reason or "cooldown")
        else:
            message = Release()
        try:
            self._pacer.send_nowait(message)
        except trio.WouldBlock:
            await self._pacer.send(message)  # rare: the Pacer is behind; it must not miss it
