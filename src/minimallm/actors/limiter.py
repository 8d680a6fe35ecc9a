"""Limiter: how many HTTP attempts may be in flight — never more than MAX_OUTSTANDING,
and fewer when the server has shown it takes fewer (:mod:`minimallm._policy.concurrency`).

Permits are items in a channel. A Worker takes one with ``receive_nowait()`` (no task
switch while one is ready) and *keeps* it from one attempt to the next: only as many
Workers take jobs as there are permits, and each sends its next request on its own
warm connection. Every attempt's :class:`AttemptReport` comes here (so the Limiter sees
every answer, what its controller learns from); it says whether the Worker kept its
permit. Until a Worker got an answer through, a refused attempt's permit comes back
with its report, and is issued again only after the Limiter has taken the refusal in:
a first wave refused within a millisecond would otherwise send the next jobs, and be
refused again, before the Limiter could freeze the permits. To lower the limit the
Limiter takes idle permits back from the channel, and for permits held by Workers
puts :data:`REVOKE` tokens in the revocation channel: the next Worker to finish an
attempt (or to take a job) takes a token and returns its permit. To raise it, it
withdraws tokens not yet taken, then mints permits. It drains its whole inbox per
wake-up, a :class:`~minimallm.actors.report_inbox.ReportInbox`: any report but a calm
success wakes it at once; calm ones, in bursts of an eighth of the permits out.

Invariant: permits in existence (idle in the channel + held by Workers) minus the
revocations under way <= the limit <= cap, whenever the Limiter has run; a Worker never
holds more than one permit.

Being the one actor that sees every attempt, it also sums them up for the others
(:mod:`minimallm._policy.flow`): a step of congestion or the return to calm, and a
server that stopped or started answering, go to the Pacer and the Cooldown as
:class:`CongestionEvent` and :class:`ReachEvent` — rare messages, so a healthy client
sends those two actors nothing. Every refusal goes to the Pacer as :class:`Refused`,
saying whether the concurrency was (nearly) used up: a server with few slots refuses
only when they are full, so one that came with fewer out is a rate's doing, if
anything's (a Worker waiting for the Pacer's slot holds a permit but is not out).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

import trio

from minimallm._policy.concurrency import ConcurrencyControl
from minimallm._policy.flow import CongestionEvent, FlowWatch, ReachEvent
from minimallm.actors.flags import Revoking
from minimallm.actors.messages import PERMIT, REVOKE, AttemptReport, Refused
from minimallm.actors.report_inbox import ReportInbox

if TYPE_CHECKING:
    from minimallm._outcome.attempts import AttemptKind

__all__ = ["Limiter", "LimiterStatistics"]

LimiterMessage = AttemptReport

BUSY_TIMEOUT_SHARE = 0.75
"""After timeouts in a busy server's queue, the attempts kept in flight are those it
serves in this share of TIMEOUT_S (a margin for its latency's spread)."""


class _Waiters(Protocol):
    """The job queue (or, with several endpoints, the endpoint's Admission): its
    ``statistics().tasks_waiting_receive`` are Workers holding a permit, waiting for a job."""

    def statistics(self) -> Any: ...


class LimiterStatistics(NamedTuple):
    """The Limiter now: ``limit`` (of ``cap``), permits ``held`` by Workers, of which
    ``busy`` with an attempt (the others wait for a job), Workers ``waiting`` for a
    permit, whether the limit was ``learned`` from the server (below the cap) or is
    ``frozen`` after an overload, and the smoothed success latency (s)."""

    limit: int
    cap: int
    held: int
    busy: int
    waiting: int
    learned: bool
    frozen: bool
    srtt_s: float | None
    decreases: int
    tolerated: float = 0.0
    """The share of refusals judged not to depend on the load (0: none)."""
    fast_s: float | None = None
    """The fastest tenth of the recent successes' latencies (s; None: too few yet)."""
    first_fast_s: float | None = None
    """The same for the run's first successes: ``fast_s`` far above it means the
    server queues (:mod:`minimallm._policy.binding`)."""


class Limiter:
    """Actor owning the concurrency limit and the permits."""

    __slots__ = (
        "_control",
        "_existing",
        "_inbox",
        "_jobs",
        "_listeners",
        "_pacer",
        "_permits_in",
        "_permits_out",
        "_revocations_in",
        "_revocations_out",
        "_revoking",
        "_revoking_shown",
        "_slot_waiters",
        "_waiting",
        "_watch",
    )

    def __init__(
        self,
        control: ConcurrencyControl,
        inbox: ReportInbox,
        permits: tuple[trio.MemorySendChannel[object], trio.MemoryReceiveChannel[object]],
        revocations: tuple[trio.MemorySendChannel[object], trio.MemoryReceiveChannel[object]],
        jobs: _Waiters,
        listeners: tuple[trio.MemorySendChannel[Any], ...] = (),
        *,
        assume_answered: bool = False,  # several endpoints: see FlowWatch
        slot_waiters: Callable[[], int] | None = None,
        pacer: trio.MemorySendChannel[Any] | None = None,
        revoking: Revoking | None = None,
    ) -> None:
        """``pacer``: where to tell of refusals (:class:`Refused`); ``slot_waiters``:
        how many Workers holding a permit wait for the Pacer's slot (its
        ``statistics().waiting``): they make no attempt yet, so they do not count as
        out when a refusal is told (the concurrency controller sees them as busy, as
        before: while the pace binds, its limit may grow towards what it allows);
        ``revoking``: the flag the Workers read before looking for a revocation."""
        self._control = control
        self._watch = FlowWatch(control.signal, assume_answered=assume_answered)
        self._inbox = inbox
        self._permits_in, self._permits_out = permits
        self._revocations_in, self._revocations_out = revocations
        self._jobs = jobs  # read for statistics only: Workers waiting there hold a permit
        self._slot_waiters = slot_waiters
        self._waiting: int | None = None  # Workers waiting for a slot (read once a wake-up)
        self._pacer = pacer
        self._listeners = listeners  # the Pacer's and the Cooldown's inboxes
        self._existing = 0  # permits in the channel + permits Workers hold
        self._revoking = 0  # revocations asked for and not yet answered by a returned permit
        self._revoking_shown = Revoking() if revoking is None else revoking

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Limiter limit={s.limit}/{s.cap} held={s.held} busy={s.busy}>"

    def _idle(self) -> int:
        return self._permits_in.statistics().current_buffer_used

    def _busy(self) -> int:
        """Permits held by Workers that are making an attempt (not waiting for a job)."""
        held = self._existing - self._idle()
        idle: int = self._jobs.statistics().tasks_waiting_receive
        return max(0, held - idle)

    def statistics(self) -> LimiterStatistics:
        """A frozen snapshot (safe to call from any task of the same run)."""
        c = self._control
        fast, first_fast = self._watch.fast_latencies()
        return LimiterStatistics(
            limit=c.limit,
            cap=c.cap,
            held=self._existing - self._idle(),
            busy=self._busy(),
            waiting=self._permits_out.statistics().tasks_waiting_receive,
            learned=c.learned,
            frozen=c.frozen,
            srtt_s=c.srtt_s,
            decreases=c.decreases,
            tolerated=c.signal.floor,
            fast_s=fast,
            first_fast_s=first_fast,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Issue permits; adapt the limit from every report; until the inbox closes."""
        self._issue()
        task_status.started()
        inbox = self._inbox
        while True:
            burst = await inbox.burst(self._control.wake_at())
            if burst is None:
                return
            self._react(burst, trio.current_time())
            # a wake-up per eighth of the permits out in calm answers (see ReportInbox)
            inbox.linger = self._existing // 8 or 1

    def _react(self, burst: list[LimiterMessage], now: float) -> None:
        """One wake-up: take in the messages (maybe none: a deadline passed), let the
        controller see the time, bring the permits to the limit. No checkpoint. A
        success whose Worker kept its permit, most reports, goes the short way: the
        cores' ``on_success``/``observe_success`` (the same decisions as ``_handle``)."""
        # permits busy with an attempt: read once, when first needed (-1 until then;
        # nothing else runs during a wake-up, so it is what it was at its start). The
        # channels' statistics() cost ~2 µs each: a calm client at the cap skips them
        busy = -1
        self._waiting = None  # read at the first refusal, if any (off the healthy path)
        control, watch = self._control, self._watch
        for message in burst:
            if message.kept and message.kind == "ok":  # the common case, in short
                done_at, sent_at = message.done_at, message.sent_at
                others = busy - 1 if busy > 1 else 0 if busy >= 0 else -1
                if not control.on_success(done_at, sent_at, others):  # it needs them
                    busy = self._busy()
                    control.on_success(done_at, sent_at, busy - 1 if busy > 1 else 0)
                if not watch.observe_success(done_at, sent_at, busy):
                    if busy < 0:
                        busy = self._busy()
                    self._observe(done_at, sent_at, "ok", False, busy)
            else:
                busy = self._handle(message, busy if busy >= 0 else self._busy())
        if control.frozen:  # else tick does nothing
            control.tick(now, busy if busy >= 0 else self._busy())
        self._issue()

    def _handle(self, message: LimiterMessage, busy: int) -> int:
        """Take in one report (a success with its permit kept: :meth:`_react` does it
        in short); ``busy``: permits busy with an attempt before it, returned
        as after it (a permit that came back is no longer busy)."""
        if not message.kept:
            self._existing -= 1  # a permit came back (revoked, or its attempt refused)
            if not message.unasked:
                self._revoking = max(0, self._revoking - 1)
            busy = max(0, busy - 1)
        kind = message.kind
        refused = kind == "overload"
        gone = refused and message.upstream_gone
        if message.answered and not (gone and self._watch.quiet):
            others = busy - 1 if message.kept else busy
            if others < 0:
                others = 0
            control = self._control
            if refused and self._pacer is not None:
                # full: perhaps the concurrency's doing (a server with few slots refuses
                # only when they are full, at most one above them with the limit it
                # settles on); below: fewer out than a level shown to hold before it
                # was sent (a round trip of clean answers after a decision: not the
                # cap, a restored level, or survivors counted while their wave's
                # refusals still come). Out: making an attempt, not waiting for a slot
                if self._waiting is None:
                    waiters = self._slot_waiters
                    self._waiting = 0 if waiters is None else waiters()
                out = max(0, others - self._waiting)
                full = out + 2 >= control.limit
                below = (
                    out + 1 < 0.75 * control.stable
                    and message.sent_at > control.held_at > -math.inf
                )
                refusal = Refused(message.sent_at, message.done_at, below, full)
                with contextlib.suppress(trio.WouldBlock):
                    self._pacer.send_nowait(refusal)
            self._control.on_answer(message.done_at, message.sent_at, refused, others)
        elif kind == "timeout":
            self._busy_timeout(message)
        self._observe(message.done_at, message.sent_at, kind, gone, busy)
        return busy

    def _observe(
        self, done_at: float, sent_at: float, kind: AttemptKind, gone: bool, busy: int
    ) -> None:
        """The flow watch takes the report in; tell the others of what it makes of it."""
        limit = self._control.limit
        for event in self._watch.observe(done_at, sent_at, kind, limit, gone, busy):
            if isinstance(event, CongestionEvent) and event.independent:
                self._control.restore(event.at, event.limit_before)
            self._tell(event)

    def _busy_timeout(self, message: LimiterMessage) -> None:
        """An attempt timed out while the server answered others (within the last
        second, after it was sent): it waited in a busy server's queue. At most as many
        attempts as the server finishes in ``BUSY_TIMEOUT_SHARE`` of the time it waited
        fit within TIMEOUT_S (Little's law): the limit drops to that at once. A timeout
        with no answer meanwhile may be an outage (:class:`FlowWatch`'s business)."""
        now, sent_at = message.done_at, message.sent_at
        if not self._watch.answered_since(max(sent_at, now - 1.0)):
            return
        served_per_s = self._watch.delivered_per_s(now)
        if served_per_s > 0:
            fits = int(BUSY_TIMEOUT_SHARE * served_per_s * (now - sent_at))
            self._control.limit_to(now, sent_at, fits)

    def _tell(self, event: CongestionEvent | ReachEvent) -> None:
        for listener in self._listeners:
            with contextlib.suppress(trio.WouldBlock):  # a starved inbox: the next one counts
                listener.send_nowait(event)

    def _issue(self) -> None:
        """Bring the permits to the limit: take idle ones back, revoke held ones, or
        mint new ones. While frozen (a step of congestion, before the decision) every
        permit is revoked: no new attempt starts until the limit is decided."""
        want = 0 if self._control.frozen else self._control.limit
        if self._existing - self._revoking > want:
            idle = self._idle()
            while self._existing - self._revoking > want and idle > 0:
                try:
                    self._permits_out.receive_nowait()
                except trio.WouldBlock:
                    break
                idle -= 1
                self._existing -= 1
        excess = max(0, self._existing - want)
        while self._revoking < excess:
            self._revocations_in.send_nowait(REVOKE)
            self._revoking += 1
        while self._revoking > excess:
            try:
                self._revocations_out.receive_nowait()  # a token nobody took yet
            except trio.WouldBlock:
                break
            self._revoking -= 1
        while self._existing < want:
            self._permits_in.send_nowait(PERMIT)
            self._existing += 1
        self._revoking_shown.pending = self._revoking > 0  # else no token waits
