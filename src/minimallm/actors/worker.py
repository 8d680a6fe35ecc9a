"""Worker: owns one HTTP connection and makes one attempt at a time, pulling jobs.

There are exactly MAX_OUTSTANDING Workers, each a long-lived task. A Worker first takes
a permit from the Limiter and keeps it from one attempt to the next (:mod:`.permit`):
only as many Workers take jobs as the concurrency limit allows, and a Worker's next
request goes out on the same warm connection (a server with few slots sees the next
request only after it has finished the last one on that connection). A Worker never
waits for a permit with a job in hand. One attempt::

    permit   ◄─ the Limiter's permit channel     (kept between attempts)
    job      ◄─ the shared JobQueue              (take_nowait first: no switch if ready)
    go       ◄─ the Pacer: at once while its SendGate is open, else WantSlot → Slot
    deadline ─► the Watchdog's Watches           (two list stores; TIMEOUT_S from here)
    POST on the own connection; classify the answer (``_outcome``: one table)
    report   ─► Limiter (kept, or back when revoked, or refused before any success);
                the Pacer if the answer had rate headers;
                the Cooldown if it was an overload or a probe; the batch's Monitor
                (the fan-out: actors/reports.py)
    outcome  ─► the caller's Reply

TIMEOUT_S bounds the whole attempt (connect + send + wait + read): the Watchdog calls
:meth:`Worker.expire` at the deadline, which interrupts the connection (the transport's
``interrupt()`` closes the socket and wakes the waiting read). A caller that leaves (it
was cancelled, its batch aborted) calls :meth:`Worker.interrupt` through its Reply: a
waiting Worker stops waiting, a sending one closes its half-used connection. These two
handles are the only ways into a Worker from another task, and all they can do is end
the attempt they name (an attempt number that is no longer current is ignored).

A batch's item comes as an :class:`~minimallm.actors.messages.ItemJob`: the Worker
runs the item's whole request door in its own task (``_runtime/request.py``), and the
door makes its first attempt through :meth:`Worker.attempt_here`, the same attempt as a
job's, on the same connection. No task wakes to hand the request over or to bring the
answer back, and the batch queues its next item as this one ends, so the Worker finds
it waiting. Before the door waits for anything but its own attempt it calls
:meth:`Worker.let_go`: a new task of the Worker's own nursery takes over as the
Worker's driver (same connection, same permit), and the door finishes in the old one,
no longer the Worker. Batch items run in a cancel scope that lasts from one item to the
next; the batch cancels a running item through it, and the driver opens a new one.

When the runtime stops, every Worker is cancelled; a job it held goes to the runtime's
``orphan`` handler, which answers its caller (the backend closed, or the runtime failed).
"""

from __future__ import annotations

import contextlib
import enum
import math
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import trio

from minimallm._http.transport import (
    TRANSPORT_EXCEPTIONS,
    HttpTransport,
    outcome_from_exception,
    outcome_from_reply,
    timeout_outcome,
)
from minimallm._outcome.attempts import AttemptOutcome
from minimallm.actors.admission import Admission, pull
from minimallm.actors.excuse import excused
from minimallm.actors.flags import Revoking, SendGate
from minimallm.actors.jobs import JobQueue
from minimallm.actors.messages import (
    AttemptReport,
    AttemptStarted,
    ItemJob,
    Job,
    Slot,
    WantSlot,
)
from minimallm.actors.permit import Permit
from minimallm.actors.report_inbox import ReportInbox
from minimallm.actors.reports import deliver, report_of
from minimallm.actors.watchdog import Watches

__all__ = ["Worker", "WorkerChannels", "WorkerStatistics"]


class _Phase(enum.Enum):
    IDLE = 0
    WAITING = 1  # for a slot
    SENDING = 2


class WorkerStatistics(NamedTuple):
    """``phase``: ``idle``, ``waiting`` (for a slot) or ``sending``; ``permit``: holds
    one; ``attempts`` made so far."""

    phase: str
    permit: bool
    attempts: int


class WorkerChannels(NamedTuple):
    """Everything a Worker talks to (built once by the runtime's wiring)."""

    jobs: JobQueue
    permits: trio.MemoryReceiveChannel[object]
    revocations: trio.MemoryReceiveChannel[object]
    gate: SendGate
    limiter: ReportInbox
    pacer: trio.MemorySendChannel[Any]
    cooldown: trio.MemorySendChannel[Any]
    watchdog: trio.MemorySendChannel[AttemptStarted]  # tells an idle Watchdog
    watches: Watches  # this endpoint's attempts in flight, as the Watchdog sees them
    revoking: Revoking  # set while REVOKE tokens may wait in ``revocations``
    admission: Admission | None = None  # several endpoints: may this one take a job now?


class Worker:
    """Actor: one connection, one attempt at a time."""

    __slots__ = (
        "_attempts",
        "_ch",
        "_driver",
        "_expired",
        "_grants_in",
        "_grants_out",
        "_headers",
        "_index",
        "_now",
        "_nursery",
        "_orphan",
        "_permit",
        "_phase",
        "_scope",
        "_seq",
        "_timeout_s",
        "_transport",
        "_wall",
    )

    def __init__(
        self,
        index: int,
        transport: HttpTransport,
        channels: WorkerChannels,
        *,
        headers: tuple[tuple[bytes, bytes], ...],
        timeout_s: float,
        orphan: Callable[[Job | ItemJob, BaseException], None],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._index = index
        self._transport = transport
        self._ch = channels
        self._headers = headers
        self._timeout_s = timeout_s
        self._orphan = orphan
        self._wall = wall_clock
        self._grants_in, self._grants_out = trio.open_memory_channel[Slot](1)
        self._seq = 0
        self._permit = Permit(channels.permits, channels.revocations, channels.revoking)
        self._phase = _Phase.IDLE
        self._scope: trio.CancelScope | None = None
        self._expired = 0
        self._attempts = 0
        self._now: Callable[[], float] = trio.current_time  # the run's clock (see run)
        self._driver = 0  # which task drives the Worker now (see let_go)
        self._nursery: trio.Nursery  # the Worker's own tasks (see run)

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Worker {self._index} {s.phase} attempts={s.attempts}>"

    def statistics(self) -> WorkerStatistics:
        """A frozen snapshot: what the Worker does now, whether it holds a permit, how
        many attempts it made."""
        return WorkerStatistics(self._phase.name.lower(), self._permit.held, self._attempts)

    # -- the two handles ------------------------------------------------------------------

    def interrupt(self, seq: int) -> None:
        """The caller of attempt ``seq`` left: stop waiting for it or sending it."""
        if seq != self._seq:
            return
        if self._phase is _Phase.WAITING and self._scope is not None:
            self._scope.cancel()
        elif self._phase is _Phase.SENDING:
            self._transport.interrupt()

    def expire(self, seq: int) -> None:
        """Attempt ``seq`` reached its deadline: end it (it becomes a timeout)."""
        if seq == self._seq and self._phase is _Phase.SENDING:
            self._expired = seq
            self._transport.interrupt()

    # -- the actor ------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Take a permit, then jobs, one attempt at a time, until the job queue closes
        or the runtime is cancelled. The permit stays with the Worker from one attempt
        to the next (see the module docstring) until the Limiter revokes it. The
        Worker's tasks (its driver, and a batch item's door after :meth:`let_go`) run in
        its own nursery, so any of them failing is this Worker failing."""
        # the run's clock, read directly: trio.current_time() goes through two more
        # calls, and a Worker reads the time twice per attempt
        self._now = trio.lowlevel.current_clock().current_time
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await self._drive(self._driver)
        finally:
            await self._transport.aclose()

    def let_go(self) -> None:
        """(a batch item's door, running in this Worker's task) The door is about to
        wait for something other than its own attempt: a new task takes over as this
        Worker's driver (same connection, same permit), and the door's task, no longer
        the Worker, ends when the door does. Called at most once per item."""
        self._driver += 1
        self._nursery.start_soon(self._drive, self._driver, name=f"Worker {self._index}")

    async def _drive(self, me: int) -> None:
        """The Worker's loop while this task drives it (``me``: see :meth:`let_go`). Batch
        items share a cancel scope from one to the next (one each would cost as much as
        the hop it saves); once the batch cancels it, the next job gets a new one."""
        jobs = self._ch.jobs
        admission = self._ch.admission
        permit = self._permit
        job: Job | ItemJob | None = None
        try:
            while True:
                with trio.CancelScope() as items:
                    while True:
                        if not permit.held:
                            await permit.take()
                        if admission is not None:
                            job = await pull(jobs, admission, self._orphan)
                            if job is None:
                                return
                        else:
                            job = jobs.take_nowait()
                            if job is None:
                                try:
                                    job = await jobs.take()
                                except trio.EndOfChannel:
                                    return
                        if isinstance(job, Job):
                            await self._serve(job)
                        elif not job.cancelled:
                            job.scope = items
                            await job.run(self, job.order)
                            if self._driver != me:  # the door let go of the Worker
                                return
                            job.scope = None
                            if items.cancel_called:  # (the item stopped its own batch)
                                break
                        job = None
                if self._driver != me:  # its door, cancelled by its batch after let_go
                    return
                job = None
        except BaseException as exc:
            if job is not None and not job.cancelled:
                self._orphan(job, exc)  # the runtime tells the caller why (a bug, or a stop)
            raise

    async def _serve(self, job: Job) -> None:
        reply = job.reply
        if reply.cancelled:
            return
        self._seq += 1
        seq = self._seq
        reply.bind(self.interrupt, seq)
        probe: str | None = None
        if not self._ch.gate.open:  # paced or held: ask the Pacer
            try:
                slot = await self._wait_for_slot(seq, job.order)
            except _Left:
                return
            if slot.back:  # several endpoints, this one held: the others may send it
                self._ch.jobs.put(job)
                return
            probe = slot.probe
        if reply.cancelled:
            return
        if job.waiting is not None:  # sent now: the caller's wait is over
            job.waiting.deadline = math.inf
        result, sent_at = await self._attempt(job.body)
        if reply.cancelled:  # interrupted because the caller left: not the server's doing
            return
        reply.send_value(await self._reported(result, sent_at, probe, job.events, job.moves))

    async def attempt_here(
        self,
        body: bytes,
        events: trio.MemorySendChannel[Any] | None,
        order: int,
        moves: int,
    ) -> tuple[AttemptOutcome, float, float] | None:
        """(a batch item's door, running in this Worker's task) One attempt on this
        Worker's connection, as :meth:`_serve` makes a job's: its outcome, when it was
        sent and when it ended; None if this endpoint is held (several endpoints: the
        door sends it through the queue, to the others). Cancelled with the item (the
        connection, half used, is closed)."""
        self._seq += 1
        seq = self._seq
        probe: str | None = None
        if not self._ch.gate.open:  # paced or held: ask the Pacer
            await self._want_slot(seq, order)
            self._phase = _Phase.WAITING
            try:
                slot = await self._grant(seq)
            finally:
                self._phase = _Phase.IDLE
            if slot.back:
                return None
            probe = slot.probe
        result, sent_at = await self._attempt(body)
        return await self._reported(result, sent_at, probe, events, moves)

    async def _reported(
        self,
        result: AttemptOutcome,
        sent_at: float,
        probe: str | None,
        events: trio.MemorySendChannel[Any] | None,
        moves: int,
    ) -> tuple[AttemptOutcome, float, float]:
        """The attempt reported to flow control (and the batch's Monitor): what the
        caller gets."""
        report = self._report(result, sent_at, probe)
        if not deliver(self._ch, report, events):
            await self._ch.limiter.send(report)  # the Limiter is behind: wait for it
        admission = self._ch.admission
        if probe is not None or admission is not None:  # else nothing is excused
            result = excused(result, probe, moves, admission, sent_at)
        return result, sent_at, report.done_at

    async def _wait_for_slot(self, seq: int, order: int) -> Slot:
        """Ask the Pacer for a slot and wait for it; raises _Left if the caller left."""
        await self._want_slot(seq, order)
        with trio.CancelScope() as scope:
            self._scope = scope
            self._phase = _Phase.WAITING
            try:
                return await self._grant(seq)
            finally:
                self._phase = _Phase.IDLE
                self._scope = None
        raise _Left

    async def _want_slot(self, seq: int, order: int) -> None:
        grants = self._grants_out
        while True:  # a grant for an attempt given up earlier may still lie here
            try:
                grants.receive_nowait()
            except trio.WouldBlock:
                break
        want = WantSlot(seq, self._grants_in, order)
        try:
            self._ch.pacer.send_nowait(want)
        except trio.WouldBlock:
            await self._ch.pacer.send(want)

    async def _grant(self, seq: int) -> Slot:
        while True:
            slot = await self._grants_out.receive()
            if slot.seq == seq:
                return slot

    async def _attempt(self, body: bytes) -> tuple[AttemptOutcome, float]:
        self._attempts += 1
        seq = self._seq
        index = self._index
        sent_at = self._now()
        deadline = sent_at + self._timeout_s
        watches = self._ch.watches
        watches.seqs[index] = seq
        watches.deadlines[index] = deadline
        if watches.idle:  # the Watchdog waits for an attempt to start: tell it
            with contextlib.suppress(trio.WouldBlock):  # full: it has word already
                self._ch.watchdog.send_nowait(AttemptStarted(deadline, index, seq))
        self._phase = _Phase.SENDING
        try:
            reply = await self._transport.post(self._headers, body)
        except TRANSPORT_EXCEPTIONS as exc:
            if self._expired == seq:
                return timeout_outcome(self._timeout_s), sent_at
            return outcome_from_exception(exc), sent_at
        finally:
            self._phase = _Phase.IDLE
            watches.deadlines[index] = math.inf
        return outcome_from_reply(reply, wall_clock=self._wall), sent_at

    def _report(self, result: AttemptOutcome, sent_at: float, probe: str | None) -> AttemptReport:
        """The attempt's report (where it goes: ``actors/reports.py``); whether the
        Worker keeps its permit is decided here."""
        kept, revoked = self._permit.settle(result.kind)
        return report_of(result, sent_at, self._now(), probe, kept, revoked)


class _Left(Exception):
    """The caller left while the Worker waited for a slot."""
