"""Admission: the one line every HTTP attempt stands in, in front of three gates —
a free Worker (:class:`Limiter`), the cooldown deadline (:class:`Cooldown`), the RPM
slot (:class:`Pacer`). An attempt is admitted only when all three hold *at once*, and
then takes a Worker and a pacing slot in the same step, so the slot is spent only by
an attempt that goes out immediately.

Shape, and why it departs from one actor per gate joined by channels::

    caller ── try_admit() ── all gates open, nobody waiting ──► Worker.attempt()
       │                                        (in the caller's task)     │
       └─ otherwise: wait in line (FIFO) ◄── admitted by finish() or run() ┘
                                              finish(): overload → Cooldown,
                                                        Worker → Limiter

The uncontended case is a synchronous check (aiolimiter's shape: state in one
object, no task switch). Only callers that must wait park, in one FIFO; they are
admitted either by the caller that frees a Worker (``finish``) or, when the wait is
for a time (cooldown deadline, pacing slot), by this actor's ``run`` task, which
sleeps until exactly that time — no polling. The attempt itself runs in the caller's
task on the lent Worker, so a cancelled caller cancels its attempt directly.

Measured (mock server, latency 0, 64 concurrent, 2 loaded cores, same run): the
earlier pipeline (Limiter → CooldownGate → Pacer → Worker tasks over unbuffered
channels, a trio.Event and two cancel scopes per attempt) made ~14 task switches per
request (one channel hop costs ~22 µs of CPU on this box, one cancel scope
~12-15 µs). With the cheap HTTP client already in place, replacing it by this shape
took minimallm's CPU per request from 0.45 to 0.24 of a plain httpcore loop's in the
same runs (~45% less). This path makes 2 task switches per request (the socket send and
the wait for the answer) and, with the project's HTTP client, no cancel scope (the
Watchdog bounds TIMEOUT_S, see ``actors/worker.py``).

Nothing here queues without bound: the line holds parked callers only (one entry per
waiting task, removed when it is cancelled). Closing wakes every waiting caller with
:class:`BackendClosedError`.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import trio

from minimallm._attempts import AttemptError, AttemptOutcome
from minimallm._errors import BackendClosedError
from minimallm.actors.cooldown import Cooldown, Overload
from minimallm.actors.limiter import Limiter
from minimallm.actors.pacer import Pacer
from minimallm.actors.worker import Worker

__all__ = ["Admission"]


class _Turn:
    """A parked caller and the Worker reserved for it (None when woken: closed)."""

    __slots__ = ("task", "worker")

    def __init__(self, task: trio.lowlevel.Task) -> None:
        self.task = task
        self.worker: Worker | None = None


class Admission:
    """Owns the Limiter, the Cooldown and the Pacer; admits attempts in FIFO order."""

    __slots__ = ("_alarm", "_closed", "_line", "_timer_at", "cooldown", "limiter", "pacer")

    def __init__(self, limiter: Limiter, cooldown: Cooldown, pacer: Pacer) -> None:
        self.limiter = limiter
        self.cooldown = cooldown
        self.pacer = pacer
        self._line: OrderedDict[_Turn, None] = OrderedDict()
        self._alarm = trio.Event()
        self._timer_at = math.inf  # when run() looks again by itself
        self._closed = False

    def __repr__(self) -> str:
        return (
            f"<Admission waiting={len(self._line)} {self.limiter!r} {self.cooldown!r} "
            f"{self.pacer!r}{' closed' if self._closed else ''}>"
        )

    @property
    def waiting(self) -> int:
        """Callers parked in line now."""
        return len(self._line)

    # -- callers ------------------------------------------------------------------------

    def try_admit(self) -> Worker | None:
        """The fast path: a Worker if nobody waits and every gate is open now."""
        if self._line or self._closed or not self.limiter.free:
            return None
        now = trio.current_time()
        if now < self.cooldown.deadline() or now < self.pacer.not_before:
            return None
        self.pacer.take(now)
        return self.limiter.take()

    async def admit(self) -> Worker:
        """Wait in line until admitted; the Worker lent for one attempt, which the
        caller must hand back through :meth:`finish`. BackendClosedError if closed."""
        await trio.lowlevel.checkpoint_if_cancelled()  # before a Worker is taken, not after
        worker = self.try_admit()
        if worker is not None:
            return worker
        if self._closed:
            raise BackendClosedError("the minimallm runtime has stopped")
        turn = _Turn(trio.lowlevel.current_task())
        self._line[turn] = None
        if len(self._line) == 1:
            self._poke()

        def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
            del self._line[turn]
            if turn.worker is not None:  # the head gives its reserved Worker back
                self.limiter.give_back(turn.worker)
                turn.worker = None
                self._alarm.set()  # the next in line may take it
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)
        if turn.worker is None:
            raise BackendClosedError("the minimallm runtime has stopped")
        return turn.worker

    def finish(self, worker: Worker, outcome: AttemptOutcome | None) -> None:
        """The attempt on ``worker`` is over (``outcome`` None: it never completed).
        An overload is folded into the cooldown *before* the Worker is free again."""
        if isinstance(outcome, AttemptError) and outcome.overload:
            self.cooldown.report(
                Overload(trio.current_time(), outcome.retry_after_s, worker.sent_at)
            )
        self.limiter.give_back(worker)
        if self._line:
            self._poke()

    # -- the actor ----------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Admit waiting callers when the time they wait for comes; close on the way out."""
        task_status.started()
        try:
            while True:
                self._timer_at = self._admit_waiting()
                with trio.move_on_at(self._timer_at):
                    await self._alarm.wait()
                if self._alarm.is_set():
                    self._alarm = trio.Event()
        finally:
            self.close()

    def close(self) -> None:
        """Admit nobody any more; every waiting caller gets BackendClosedError."""
        self._closed = True
        while self._line:
            turn, _ = self._line.popitem(last=False)
            if turn.worker is not None:
                self.limiter.give_back(turn.worker)
                turn.worker = None  # None: closed
            trio.lowlevel.reschedule(turn.task)

    def _poke(self) -> None:
        """Something changed for the head of the line: admit now, or make sure the
        actor wakes in time."""
        wake_at = self._admit_waiting()
        if wake_at < self._timer_at:
            self._alarm.set()

    def _admit_waiting(self) -> float:
        """Admit from the head of the line while every gate is open now. Returns when
        to look again: a time (cooldown or pacing), or ``inf`` (at the next finish).

        The head reserves a free Worker as soon as there is one and keeps it while it
        waits for the cooldown or its pacing slot (as an attempt past the Limiter
        did in the channel pipeline): it counts as in flight, and it can go the
        moment its time comes."""
        line = self._line
        if not line or self._closed:
            return math.inf
        now = trio.current_time()
        while line:
            head = next(iter(line))
            if head.worker is None:
                if not self.limiter.free:
                    return math.inf
                head.worker = self.limiter.take()
            ready_at = max(self.cooldown.deadline(), self.pacer.not_before)
            if ready_at > now:
                return ready_at
            self.pacer.take(now)
            line.popitem(last=False)
            trio.lowlevel.reschedule(head.task)
        return math.inf
