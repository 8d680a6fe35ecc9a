"""The messages the actors exchange (all frozen), and the one-shot :class:`Reply`.

Who sends what to whom (the wiring is ``minimallm._runtime.serve.serve``)::

    caller ── Job ──────────────► Workers (one shared JobQueue; a Worker pulls jobs)
    batch ── ItemJob ───────────► Workers (the same queue: an item whose whole request
                                  the Worker runs in its own task, see ItemJob)
    Limiter ── PERMIT ──────────► Workers (a channel of permits; a Worker keeps its permit)
    Limiter ── REVOKE ──────────► Workers (give a permit back: the limit fell)
    Pacer ── SendGate / Slot ───► Workers (the gate open while unpaced; else Slots on
                                  request; several endpoints: Slot(back=True) hands a
                                  job back)
    Worker ── WantSlot ─────────► Pacer
    Worker ── AttemptReport ────► Limiter (kept, or the permit back), Pacer, Cooldown,
                                  and the batch's Monitor when the Job names one
    Worker ── AttemptStarted ───► Watchdog (only an idle one: it reads the Workers'
                                  deadlines from its Watches otherwise)
    Cooldown ── Hold / Release ─► Pacer
    Worker ── Reply ────────────► caller (the attempt's outcome)
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Generic, NamedTuple, TypeVar

import trio

import outcome
from minimallm._outcome.attempts import AttemptKind
from minimallm._policy.flow import upstream_gone
from minimallm._policy.ratelimit import RateLimitInfo

__all__ = [
    "PERMIT",
    "REVOKE",
    "AttemptReport",
    "AttemptStarted",
    "Hold",
    "ItemJob",
    "Job",
    "Refused",
    "Release",
    "Reply",
    "Slot",
    "WantSlot",
]

T = TypeVar("T")


class _Token:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


PERMIT: Final = _Token("PERMIT")
"""One attempt may be in flight (the Limiter mints them; a Worker holding one may send)."""

REVOKE: Final = _Token("REVOKE")
"""The Limiter wants a permit back: the Worker that takes this returns its own."""

# The per-attempt messages (Job, AttemptReport, WantSlot, Slot, AttemptStarted) are
# NamedTuples: as immutable as a frozen dataclass and ~4x cheaper to build (a frozen
# dataclass sets each field through object.__setattr__), and several are built per
# attempt. Hold is one too (cheaper to define at import); Release, with no field,
# stays a dataclass (an empty tuple would be false).


class Job(NamedTuple):
    """One HTTP attempt to make: the request body, where the outcome goes, the batch
    Monitor's inbox (None outside a batch) for the attempt's report (unless it
    succeeded: the request's answer tells the Monitor), the request's
    ``order`` (its number in the order requests arrived; its retries keep it), and
    ``waiting``: after refusals, the cancel scope whose deadline (MAX_WAIT_S) bounds the
    caller's wait for this attempt to go out; the Worker lifts the deadline as it sends
    (a request held too long by a shared pause ends then; an attempt once sent is not
    cut); and its attempts so far that were excused (``moves``: with several endpoints,
    they bound how often one request moves on from an endpoint found down,
    :func:`~minimallm.actors.excuse.excused`)."""

    body: bytes
    reply: Reply[Any]
    events: trio.MemorySendChannel[Any] | None = None
    order: int = 0
    waiting: trio.CancelScope | None = None
    moves: int = 0

    @property
    def cancelled(self) -> bool:
        """The caller left: the job needs no Worker any more."""
        return self.reply.cancelled


class ItemJob:
    """A batch's item, for the Worker that takes it to run whole in its own task.

    ``run(worker, order)`` is the item's request door (``_runtime/request.py``) with that
    Worker: its first attempt goes out on the Worker's own connection, so handing the
    request over and bringing its answer back cost no task switch, and the Worker finds
    the batch's next item already queued when it is done (the batch queues it as this
    one ends). Anything else the request has to wait for (an identical request in
    flight, a retry's backoff, a held endpoint) the door waits for after letting go of
    the Worker (:meth:`~minimallm.actors.worker.Worker.let_go`).

    ``fail(error)``: the runtime stopped before or while running it (the batch stops
    with ``error``). ``order``: its number in the order requests arrived, given as it is
    queued (Workers that take items in that order may start them in any order: trio
    runs a wave of woken tasks in either order). ``scope``: the cancel scope it runs
    in (set by the Worker as it starts it; None while queued); the batch cancels a
    running item through it, and a queued one by :meth:`cancel` (a Worker then skips
    it). Mutable, unlike the other messages: it is the item's own record while it is in
    progress."""

    __slots__ = ("cancelled", "fail", "order", "run", "scope")

    def __init__(
        self,
        run: Callable[[Any, int], Awaitable[None]],
        fail: Callable[[BaseException], None],
    ) -> None:
        self.run = run
        self.fail = fail
        self.order = 0
        self.scope: trio.CancelScope | None = None
        self.cancelled = False

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "queued" if self.scope is None else "running"
        return f"<ItemJob {state}>"

    def cancel(self) -> None:
        """Stop the item: a queued one is skipped, a running one is cancelled."""
        self.cancelled = True
        if self.scope is not None:
            self.scope.cancel()


class AttemptReport(NamedTuple):
    """An attempt is over: sent and done at (trio time, seconds), how it ended for flow
    control, the server's Retry-After (seconds) and rate-limit headers, the tokens it
    used, whether it went out as the Pacer's probe (and why the Pacer was probing),
    whether the Worker keeps its permit (``kept``; False: the permit comes back), the
    HTTP status of an answer that was not a success (None otherwise), and whether a
    permit that came back was refused rather than revoked (``unasked``: no revocation
    token was taken for it)."""

    sent_at: float
    done_at: float
    kind: AttemptKind
    retry_after_s: float | None = None
    rate: RateLimitInfo | None = None
    tokens: int | None = None
    probe: str | None = None
    kept: bool = False
    status: int | None = None
    unasked: bool = False

    @property
    def answered(self) -> bool:
        """True when the server answered (any status), as opposed to no answer."""
        return self.kind in ("ok", "overload", "failed")

    @property
    def upstream_gone(self) -> bool:
        """A gateway answered for a server behind it that is not there (see
        :func:`minimallm._policy.flow.upstream_gone`)."""
        return self.kind == "overload" and upstream_gone(self.status, self.retry_after_s)


class Refused(NamedTuple):
    """Limiter → Pacer: an attempt sent at ``sent_at`` was refused at ``at`` while fewer
    attempts were out than the concurrency limit allows (so it is not the limit's
    doing: a rate may be), unless ``full`` (the limit was nearly used up); ``below``:
    fewer even than the concurrency that held (a server with few slots never refuses
    then: a rate limit's sign)."""

    sent_at: float
    at: float
    below: bool = False
    full: bool = False


class WantSlot(NamedTuple):
    """A Worker holding a permit asks the Pacer when it may send its job of ``order``;
    the Pacer answers with a :class:`Slot` carrying ``seq`` on ``grant``."""

    seq: int
    grant: trio.MemorySendChannel[Slot]
    order: int = 0


class Slot(NamedTuple):
    """Send now. ``probe``: this send is the Pacer's one probe after a hold, and why it
    probes (``"cooldown"`` or ``"outage"``); None for an ordinary paced send. ``back``:
    do not send; hand the job back to the shared queue (several endpoints: this one
    is held, the others may take it)."""

    seq: int
    probe: str | None = None
    back: bool = False


class Hold(NamedTuple):
    """Cooldown → Pacer: send nothing until ``until`` (trio time, seconds); then, with
    ``probe``, let exactly one attempt go and hold again until told; ``reason`` is
    ``"cooldown"`` or ``"outage"``."""

    until: float
    probe: bool
    reason: str


@dataclass(frozen=True, slots=True)
class Release:
    """Cooldown → Pacer: the hold is over; pace as usual."""


class AttemptStarted(NamedTuple):
    """Worker → an idle Watchdog: Worker ``worker``'s attempt ``seq`` must end by
    ``deadline`` (trio time, seconds). Sent only while the Watchdog waits for an
    attempt to start; otherwise it reads the deadline from its
    :class:`~minimallm.actors.watchdog.Watches`."""

    deadline: float
    worker: int
    seq: int


class Reply(Generic[T]):
    """A one-shot answer from a Worker to the task that created this reply.

    The caller awaits :meth:`receive`; the Worker that takes the job calls :meth:`bind`
    with its interrupt handle, then :meth:`send` once. If the caller is cancelled while
    waiting, the reply is marked :attr:`cancelled` and the bound handle is called, which
    ends the attempt at once (the Worker closes the half-used connection); a later
    :meth:`send` is then dropped. Costs one task switch, no channel, no Event.
    """

    __slots__ = ("_handle", "_result", "_sent", "_seq", "_task", "_waiting", "cancelled")

    def __init__(self) -> None:
        self._task = trio.lowlevel.current_task()
        # the value itself, or an outcome.Error (sent=True): no outcome.Value per attempt
        self._result: T | outcome.Error | None = None
        self._sent = False
        self._handle: Callable[[int], None] | None = None
        self._seq = 0
        self._waiting = False
        self.cancelled = False

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "sent" if self._sent else "waiting"
        return f"<Reply {state}>"

    def bind(self, handle: Callable[[int], None], seq: int) -> None:
        """(Worker) ``handle(seq)`` ends the attempt if the caller leaves."""
        self._handle = handle
        self._seq = seq

    def send(self, result: outcome.Outcome[T]) -> None:
        """(Worker) Deliver the outcome; dropped if the caller has left."""
        if isinstance(result, outcome.Value):
            self.send_value(result.value)
        else:
            assert isinstance(result, outcome.Error)
            self._deliver(result)

    def send_value(self, value: T) -> None:
        """(Worker) :meth:`send` of a value."""
        self._deliver(value)

    def _deliver(self, result: T | outcome.Error) -> None:
        if self.cancelled or self._sent:
            return
        self._result = result
        self._sent = True
        if self._waiting:
            self._waiting = False
            trio.lowlevel.reschedule(self._task)

    async def receive(self) -> T:
        """(caller) Wait for the outcome (cancellable). Returns at once, without a
        checkpoint, if it is already there (the caller's send was the checkpoint)."""
        if not self._sent:

            def abort(_: trio.lowlevel.RaiseCancelT) -> trio.lowlevel.Abort:
                self._waiting = False
                self.cancelled = True
                if self._handle is not None:
                    self._handle(self._seq)
                return trio.lowlevel.Abort.SUCCEEDED

            self._waiting = True
            await trio.lowlevel.wait_task_rescheduled(abort)
        result = self._result
        if type(result) is outcome.Error:
            self._result = None  # unwrap raises; drop the reference (no cycle)
            return result.unwrap()
        return result  # type: ignore[return-value]
