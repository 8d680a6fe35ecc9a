"""Admission: whether one endpoint's Workers may take jobs now (several endpoints only).

With several endpoints of one model every endpoint's Workers pull from the one shared
job queue, so whichever endpoint has a free Worker holding a permit takes the next
job (the endpoint with the most free learned capacity gets the most work, whatever
its place in the list). A Worker of an endpoint its Pacer holds (an outage, a shared
pause) must not take a job it cannot send: its Pacer closes the endpoint's
Admission, and the Worker waits here before pulling, and checks again after a pull
(it may have waited in the queue since before the hold), handing a job it may not
send back to the queue for the other endpoints. When a hold ends with a probe, the
Pacer admits exactly one job: the probe.

The Admissions of one model's endpoints form a *fleet* (one list, shared): a Worker
whose attempt found no server asks whether another endpoint is up (not in an outage:
:meth:`Admission.others_up`), and so does the Cooldown before it gives an outage up (a
request moves to an endpoint that answers rather than fail because one is down).

Plain state shared by one Pacer (the writer) and its endpoint's Workers (readers),
all in one trio run; no messages, no task switch while the endpoint is open. With one
endpoint there is no Admission at all (the Workers keep the jobs they take and wait
for the Pacer's probe slot, as a lone client must).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import trio

if TYPE_CHECKING:
    from minimallm.actors.jobs import JobQueue
    from minimallm.actors.messages import ItemJob, Job

__all__ = ["Admission", "pull"]


class _Idle(NamedTuple):
    tasks_waiting_receive: int


class Admission:
    """``open`` (any number of jobs), or ``tickets`` (0: none; 1: the probe's)."""

    __slots__ = ("_fleet", "_lot", "_open", "_tickets", "answered_sent", "idle", "outage")

    def __init__(self, fleet: list[Admission] | None = None) -> None:
        """``fleet``: the Admissions of the model's other endpoints (this one joins it;
        None: alone)."""
        self._fleet = [] if fleet is None else fleet
        self._fleet.append(self)
        self.outage = False
        """The endpoint is held for an outage (its Pacer says so; False when open)."""
        self.answered_sent = -math.inf
        """When the latest attempt that this endpoint answered went out (trio time, s;
        its Workers write it): an attempt that timed out with nothing sent after it
        answered met a silent endpoint."""
        self.idle = 0
        """The endpoint's Workers waiting for a job (they hold a permit, make no attempt)."""
        self._open = True
        self._tickets = 0
        self._lot = trio.lowlevel.ParkingLot()

    def __repr__(self) -> str:
        return f"<Admission {self.state}>"

    @property
    def state(self) -> str:
        """``open``, ``probe`` (one job admitted for the probe) or ``closed``."""
        if self._open:
            return "open"
        return "probe" if self._tickets else "closed"

    @property
    def is_open(self) -> bool:
        """True while the endpoint takes jobs freely."""
        return self._open

    @property
    def endpoints(self) -> int:
        """How many endpoints the fleet has (this one included)."""
        return len(self._fleet)

    def others_up(self) -> bool:
        """True while another endpoint of the fleet is not held for an outage (it takes
        jobs, or will after a pause)."""
        return any(not a.outage for a in self._fleet if a is not self)

    def statistics(self) -> _Idle:
        """For the Limiter: its Workers waiting for a job, as the job queue reports them."""
        return _Idle(self.idle)

    # -- the Pacer ----------------------------------------------------------------------

    def open(self) -> None:
        """Take jobs freely (no hold)."""
        self.outage = False
        if not self._open:
            self._open = True
            self._tickets = 0
            self._lot.unpark_all()

    def close(self) -> None:
        """Take no job (held, or the probe is out)."""
        self._open = False
        self._tickets = 0

    def admit_one(self) -> None:
        """Take exactly one job (the probe's); idempotent until it is taken."""
        self._open = False
        if not self._tickets:
            self._tickets = 1
            self._lot.unpark_all()

    # -- the Workers --------------------------------------------------------------------

    def try_take(self) -> bool:
        """May the Worker keep the job it just took? (Takes the probe's ticket.)"""
        if self._open:
            return True
        if self._tickets:
            self._tickets -= 1
            return True
        return False

    async def wait(self) -> None:
        """Until the endpoint takes a job (open, or a ticket is out); no checkpoint when
        it does already."""
        while not (self._open or self._tickets):
            await self._lot.park()


async def pull(
    jobs: JobQueue,
    admission: Admission,
    orphan: Callable[[Job | ItemJob, BaseException], None],
) -> Job | ItemJob | None:
    """(a Worker of one of several endpoints) The next job this endpoint may send (None:
    the queue closed). Waits while the endpoint is held; a job taken while the endpoint
    went into a hold goes back to the queue, for the other endpoints (``orphan``: tells
    the job's caller if that fails). Counted as idle meanwhile (for the Limiter: a
    Worker waiting here holds a permit but makes no attempt)."""
    admission.idle += 1
    try:
        while True:
            await admission.wait()
            job = jobs.take_nowait()
            if job is None:
                job = await jobs.take()
            if admission.try_take():
                return job
            if job.cancelled:
                continue
            try:
                jobs.put(job)  # held since: for the other endpoints
            except BaseException as exc:
                orphan(job, exc)
                raise
    except trio.EndOfChannel:
        return None
    finally:
        admission.idle -= 1
