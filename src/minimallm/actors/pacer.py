"""Pacer: *when* an attempt may go out — the RPM cap, a rate learned from the server,
and the holds the Cooldown asks for (a shared pause, an outage) with their probes.

Two ways to let a Worker send, so that an unpaced client pays nothing:

- **Open**: no RPM, no learned rate, no hold. The Pacer opens the endpoint's
  :class:`~minimallm.actors.flags.SendGate` (a flag only it writes); a Worker that finds
  it open sends. No message, no task switch, and the Pacer is not involved at all.
- **Paced or held**: the Pacer has shut the gate. A Worker that finds it shut
  sends :class:`WantSlot` (it already holds a permit, so it can send the moment it is
  told) and waits for a :class:`Slot` on its own grant channel. The Pacer grants slots
  oldest request first (the order requests arrived, whatever order the Workers asked
  in: trio may run a wave of woken Workers in reverse) at the times of its
  :class:`~minimallm._policy.pacing.PacingSchedule`
  (absolute: a late wake-up does not push later sends back); during a hold it grants
  nothing until the hold ends, then exactly one *probe* slot when the hold asks for one,
  and waits for the Cooldown's next word (:class:`Hold` or :class:`Release`).

A slot is granted only to a Worker that asked, i.e. holds a permit and can send at once,
so a slot is never spent while an attempt still waits for a concurrency permit. The
Pacer learns the server's rate (:mod:`minimallm._policy.rate`) from the reports of
answers that carried ``x-ratelimit-*`` headers, and from the Limiter's
:class:`CongestionEvent` and :class:`Refused`. At most one request per Worker is queued: a newer one
replaces it (a Worker whose caller left asks again for its next job).

With several endpoints ``RPM`` is one total for the key: every endpoint's Pacer takes
its send times from one shared RPM schedule (plain state, all in one trio run), and
paces its endpoint's learned rate on a schedule of its own; a send needs a slot of
both. The total thus goes where the work goes (an endpoint in an outage, or a small
one, asks for fewer slots and leaves them to the others) and is never exceeded.

With several endpoints the Pacer of each also keeps its endpoint's
:class:`~minimallm.actors.admission.Admission`: closed during a hold (and every queued
Worker is sent its job back, ``Slot(back=True)``, for the other endpoints), one job
admitted for the probe, open otherwise.
"""

from __future__ import annotations

import heapq
import math
from typing import NamedTuple

import trio

from minimallm._policy.flow import CongestionEvent, ReachEvent
from minimallm._policy.pacing import PacingSchedule
from minimallm._policy.rate import RateControl
from minimallm.actors._inbox import receive_burst
from minimallm.actors.admission import Admission
from minimallm.actors.flags import SendGate
from minimallm.actors.messages import (
    AttemptReport,
    Hold,
    Refused,
    Release,
    Slot,
    WantSlot,
)

__all__ = ["Pacer", "PacerMessage", "PacerStatistics"]

PacerMessage = WantSlot | AttemptReport | Hold | Release | CongestionEvent | ReachEvent | Refused


class PacerStatistics(NamedTuple):
    """The Pacer now. ``mode``: ``open``, ``paced``, ``held`` or ``probing``;
    ``rate_per_s``: the pace in requests/s (None when open); ``rate_source``: what
    sets it (``rpm``, ``headers``, ``learned``); ``waiting``: Workers waiting for a
    slot; ``held_until`` (trio time, s) and ``hold_reason`` during a hold; ``granted``:
    slots given so far."""

    mode: str
    rate_per_s: float | None
    rate_source: str | None
    rpm: int
    waiting: int
    held_until: float | None
    hold_reason: str | None
    granted: int


class _HoldState:
    __slots__ = ("probe", "probed", "reason", "until")

    def __init__(self, hold: Hold) -> None:
        self.until = hold.until
        self.probe = hold.probe
        self.reason = hold.reason
        self.probed = False


class Pacer:
    """Actor owning the send schedule, the learned rate and the gate."""

    __slots__ = (
        "_admission",
        "_asked",
        "_gate",
        "_granted",
        "_heap",
        "_hold",
        "_inbox",
        "_learned",
        "_planned_slot",
        "_queue",
        "_rate",
        "_schedule",
        "_wake_at",
    )

    def __init__(
        self,
        schedule: PacingSchedule,
        rate: RateControl,
        inbox: trio.MemoryReceiveChannel[PacerMessage],
        gate: SendGate,
        admission: Admission | None = None,
        learned: PacingSchedule | None = None,
    ) -> None:
        """``schedule``: the RPM cap (with one endpoint also the learned rate's);
        ``learned``: several endpoints: this endpoint's own schedule for its learned
        rate, ``schedule`` being the RPM total shared by all their Pacers."""
        self._schedule = schedule
        self._learned = learned
        self._admission = admission  # several endpoints: which jobs this one may take
        self._rate = rate
        self._inbox = inbox
        self._gate = gate  # written here only
        gate.open = False
        # who waits for a slot: grant -> (order, asked, seq), and a heap of the same
        # (order, asked, grant) whose entries no longer in the queue are skipped
        self._queue: dict[trio.MemorySendChannel[Slot], tuple[int, int, int]] = {}
        self._heap: list[tuple[int, int, trio.MemorySendChannel[Slot]]] = []
        self._asked = 0
        self._hold: _HoldState | None = None
        self._granted = 0
        self._wake_at = math.inf
        self._planned_slot: float | None = None  # the slot time a queued Worker waits for

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Pacer {s.mode} rate={s.rate_per_s} waiting={s.waiting}>"

    def _interval(self, now: float) -> float | None:
        return self._rate.interval_s(now)

    def statistics(self) -> PacerStatistics:
        """A frozen snapshot (safe to call from any task of the same run)."""
        now = trio.current_time()
        interval = self._interval(now)
        rpm_interval = self._schedule.interval_s
        hold = self._hold
        if hold is not None:
            mode = "probing" if hold.probe and now >= hold.until else "held"
        elif self._gate.open:
            mode = "open"
        else:
            mode = "paced"
        rate: float | None = None
        source: str | None = None
        if rpm_interval or interval:
            if interval is None or rpm_interval >= interval:
                rate, source = 1.0 / rpm_interval, "rpm"
            else:
                rate, source = 1.0 / interval, self._rate.source(now)
        return PacerStatistics(
            mode=mode,
            rate_per_s=rate,
            rate_source=source,
            rpm=self._schedule.rpm,
            waiting=len(self._queue),
            held_until=None if hold is None else hold.until,
            hold_reason=None if hold is None else hold.reason,
            granted=self._granted,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve slot requests, learn the rate, obey holds, until the inbox closes."""
        self._act(trio.current_time())
        task_status.started()
        inbox = self._inbox
        while True:
            burst = await receive_burst(inbox, min(self._wake_at, self._rate.wake_at()))
            if burst is None:
                return
            for message in burst:
                self._handle(message)
            now = trio.current_time()
            self._rate.tick(now)
            self._act(now)

    def _handle(self, message: PacerMessage) -> None:
        if isinstance(message, WantSlot):
            self._asked += 1  # a newer request of a Worker replaces its older one
            self._queue[message.grant] = (message.order, self._asked, message.seq)
            heapq.heappush(self._heap, (message.order, self._asked, message.grant))
        elif isinstance(message, AttemptReport):
            if message.rate is not None:
                self._rate.on_headers(message.done_at, message.rate, message.tokens)
        elif isinstance(message, Refused):
            self._rate.on_refusal(
                message.at, message.sent_at, below=message.below, full=message.full
            )
        elif isinstance(message, CongestionEvent):
            self._rate.on_congestion(
                message.at,
                message.floor_depth,
                delivered_per_s=message.delivered_per_s,
                baseline_per_s=message.baseline_per_s,
                srtt_s=message.srtt_s,
                independent=message.independent,
                depth=message.depth,
                during_per_s=message.during_per_s,
                rttvar_s=message.rttvar_s,
            )
        elif isinstance(message, Hold):
            self._hold = _HoldState(message)
        elif isinstance(message, Release):
            self._hold = None

    def _act(self, now: float) -> None:
        """Open or close the gate, grant what is due, and plan the next wake-up."""
        self._wake_at = math.inf
        planned, self._planned_slot = self._planned_slot, None  # re-planned below if still due
        hold = self._hold
        admission = self._admission
        if hold is not None:
            if admission is not None:
                admission.outage = hold.reason == "outage"
            self._gate.open = False
            if now < hold.until:
                self._wake_at = hold.until
                self._refuse()
                return
            if not hold.probe:
                self._hold = None
            elif hold.probed or not self._queue:
                # the probe is out (or nobody to send it yet): wait for the word
                if admission is not None:
                    if hold.probed:
                        self._refuse()
                    else:
                        admission.admit_one()
                return
        if self._hold is None and admission is not None:
            admission.open()
        interval = self._interval(now)
        if hold is None and not self._schedule.rpm and interval is None:
            self._gate.open = True
            while self._queue:
                self._grant(None)
            return
        self._gate.open = False
        schedule = self._schedule
        learned = self._learned
        while self._queue:
            if learned is None:
                at = schedule.peek(now, interval)
            else:  # the shared RPM total and this endpoint's learned rate
                at = max(schedule.peek(now), learned.peek(now, interval))
            if at > now:
                self._wake_at = self._planned_slot = at
                return
            # a Worker waited for this slot: any lateness is our wake-up's (keep the grid)
            waited = planned is not None and now >= planned
            if learned is None:
                schedule.take(now, interval, waited=waited)
            else:
                schedule.take(now, waited=waited)
                learned.take(now, interval, waited=waited)
            self._rate.on_send(now)
            planned = None
            if hold is not None:  # the one probe after a hold, still on the schedule
                hold.probed = True
                self._grant(hold.reason)
                self._refuse()
                return
            self._grant(None)

    def _take_oldest(self) -> tuple[trio.MemorySendChannel[Slot], int] | None:
        """The oldest waiting Worker's grant channel and seq, taken off the queue (stale
        heap entries skipped); None when nobody waits."""
        heap, queue = self._heap, self._queue
        while heap:
            _, asked, grant = heapq.heappop(heap)
            entry = queue.get(grant)
            if entry is not None and entry[1] == asked:
                del queue[grant]
                return grant, entry[2]
        return None

    def _grant(self, probe: str | None) -> None:
        taken = self._take_oldest()
        assert taken is not None  # called only while a Worker waits
        grant, seq = taken
        self._granted += 1
        try:  # noqa: SIM105  (suppress() costs a context manager per grant)
            grant.send_nowait(Slot(seq, probe))
        except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the Worker is gone, or a stale grant is still unread: the slot is lost

    def _refuse(self) -> None:
        """Several endpoints, during a hold: take no job, and hand the queued ones back."""
        if self._admission is None:
            return
        self._admission.close()
        while (taken := self._take_oldest()) is not None:
            grant, seq = taken
            try:  # noqa: SIM105
                grant.send_nowait(Slot(seq, back=True))
            except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
                pass
