"""One endpoint's flow-control set: its Limiter, Pacer, Cooldown, Watchdog and Workers.

:func:`build_endpoint` creates one endpoint's channels and actors (``serve()`` calls it
once per endpoint of ``OPENAI_BASE_URL``) and hands back its :class:`Endpoint` (the
actors the runtime's statistics read) and the actors to start. Every endpoint learns
its own concurrency, rate and outages; ``MAX_OUTSTANDING`` caps each.

Several endpoints of one model share **one job queue**: whichever endpoint has a
free Worker holding a permit takes the next job, so work goes to the endpoints with the
most free learned capacity, in proportion to it, with no bias by list order. An
endpoint its Pacer holds (an outage, a shared pause) takes no jobs, hands back those it
held (:class:`~minimallm.actors.admission.Admission`) and sends only its probes, so its
work flows to the others. A request never fails because one endpoint is down while
another is up: an attempt that found no server there (or timed out at an endpoint that
answered nothing since) moves on to the others at once, not counted against
``MAX_ATTEMPTS`` (:func:`~minimallm.actors.excuse.excused`), and
an endpoint's outage is not given up after ``MAX_ATTEMPTS`` x ``MAX_BACKOFF_S`` while
another endpoint is up (only when all are down do requests fail the ordinary way).

``RPM`` is a total for the key across all endpoints: every endpoint's Pacer takes its
send times from **one shared RPM schedule** (``rpm``, made once by ``serve()``), and
paces its own learned rate on a schedule of its own. The total goes where the work
goes: an endpoint in an outage, or one slower than an even share, asks for fewer slots
and leaves them to the others, and the exact cap (no 60 s window above ``RPM``) holds
for the sum. Not one shared Pacer: the Pacer also carries each endpoint's own holds,
probes and learned rate, and one endpoint's hold must not stop the others. Not an even
split (as before): with one endpoint down, half or more of the key's budget went unused.
``TPM`` is one budget for all endpoints too (:mod:`minimallm._runtime.tokens`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import NamedTuple

import trio

from minimallm._config.settings import MinimaLlmConfig
from minimallm._http.transport import HttpTransport
from minimallm._policy import (
    Binding,
    ConcurrencyControl,
    CooldownState,
    PacingSchedule,
    PauseControl,
    RateControl,
    binding,
)
from minimallm.actors.admission import Admission
from minimallm.actors.cooldown import Cooldown, CooldownMessage, CooldownStatistics
from minimallm.actors.flags import Revoking, SendGate
from minimallm.actors.jobs import JobQueue
from minimallm.actors.limiter import Limiter, LimiterStatistics
from minimallm.actors.messages import AttemptStarted, ItemJob, Job
from minimallm.actors.pacer import Pacer, PacerMessage, PacerStatistics
from minimallm.actors.report_inbox import ReportInbox
from minimallm.actors.watchdog import Watchdog, Watches
from minimallm.actors.worker import Worker, WorkerChannels

__all__ = ["Endpoint", "EndpointStatistics", "build_endpoint"]

REPORT_BUFFER = 4096
"""Messages buffered for the Limiter, Pacer and Cooldown (each drains its inbox per
wake-up; bounded, and a Worker's report to the Limiter waits when it is full)."""

Actors = list[tuple[str, Callable[..., Awaitable[None]]]]


class EndpointStatistics(NamedTuple):
    """One endpoint now: its number (1-based, as listed), URL, each flow-control
    actor's snapshot, attempts on the wire, what binds it, and its state in words
    (``open``, ``outage, probing``, ``cooldown``)."""

    number: int
    url: str
    limiter: LimiterStatistics
    pacer: PacerStatistics
    cooldown: CooldownStatistics
    in_flight: int
    binding: Binding | None

    @property
    def state(self) -> str:
        """``open``, ``outage, probing`` or ``cooldown``."""
        held = self.pacer.hold_reason if self.pacer.mode in ("held", "probing") else None
        if held == "outage":
            return "outage, probing"
        return held or "open"


@dataclass(frozen=True, slots=True, eq=False)  # a handle: equal only to itself
class Endpoint:
    """One endpoint's flow-control actors (read for statistics)."""

    number: int
    url: str
    limiter: Limiter
    pacer: Pacer
    cooldown: Cooldown

    def statistics(self, callers_waiting: int) -> EndpointStatistics:
        """A frozen snapshot; ``callers_waiting``: jobs no Worker has taken yet."""
        lim = self.limiter.statistics()
        pac = self.pacer.statistics()
        coo = self.cooldown.statistics()
        return EndpointStatistics(
            number=self.number,
            url=self.url,
            limiter=lim,
            pacer=pac,
            cooldown=coo,
            in_flight=max(0, lim.busy - pac.waiting),
            binding=binding(
                now=trio.current_time(),
                held=pac.hold_reason if pac.mode in ("held", "probing") else None,
                held_until=pac.held_until,
                outage_since=coo.outage_since,
                slot_waiting=pac.waiting,
                rate_per_s=pac.rate_per_s,
                rate_source=pac.rate_source,
                rpm=pac.rpm,
                permit_waiting=lim.waiting,
                limit=lim.limit,
                cap=lim.cap,
                callers_waiting=callers_waiting,
                now_wall=time.time(),
                asked_s=coo.asked_s,
                fast_s=lim.fast_s,
                first_fast_s=lim.first_fast_s,
            ),
        )


def build_endpoint(
    cfg: MinimaLlmConfig,
    number: int,
    url: str,
    jobs: JobQueue,
    *,
    fleet: list[Admission] | None,
    rpm: PacingSchedule,
    make_transport: Callable[[str], HttpTransport],
    headers: tuple[tuple[bytes, bytes], ...],
    orphan: Callable[[Job | ItemJob, BaseException], None],
    wall_clock: Callable[[], float],
) -> tuple[Endpoint, Actors]:
    """Endpoint ``number``'s channels and actors, its Workers pulling from ``jobs``
    (shared by all endpoints); ``fleet``: with several endpoints, the list of their
    Admissions that this one's joins (its Workers then take jobs only while it is
    open, see the module docstring); None with one. ``rpm``: the RPM schedule, one
    for all endpoints."""
    several = fleet is not None
    cap = cfg.max_outstanding
    permits = trio.open_memory_channel[object](cap)
    revocations = trio.open_memory_channel[object](cap)  # "give a permit back" tokens
    reports = ReportInbox(REPORT_BUFFER)  # the Limiter's: every attempt's report
    pacer_send, pacer_recv = trio.open_memory_channel[PacerMessage](REPORT_BUFFER)
    cooldown_send, cooldown_recv = trio.open_memory_channel[CooldownMessage](REPORT_BUFFER)
    # an idle Watchdog hears of the next attempt: at most one word per Worker waits
    watchdog_send, watchdog_recv = trio.open_memory_channel[AttemptStarted](cap)
    watches = Watches(cap)  # the Workers' attempts in flight, for the Watchdog
    revoking = Revoking()  # set by the Limiter while it wants permits back
    gate = SendGate()  # open while unpaced (the Pacer's word, read by the Workers)
    admission = Admission(fleet) if fleet is not None else None

    pacer = Pacer(
        rpm,
        # a bucket with twice MAX_OUTSTANDING left cannot be emptied before its next answer
        RateControl(plenty=max(64, 2 * cap)),
        pacer_recv,
        gate,
        admission,
        PacingSchedule(0) if several else None,  # its own learned rate's
    )
    limiter = Limiter(
        ConcurrencyControl(cap),
        reports,
        permits,
        revocations,
        jobs if admission is None else admission,  # who waits for a job, idle
        (pacer_send, cooldown_send),
        assume_answered=several,  # one down from the start is held too
        slot_waiters=lambda: pacer.statistics().waiting,  # ... and who waits for a slot
        pacer=pacer_send,  # refusals not the concurrency's doing
        revoking=revoking,
    )
    pause = PauseControl(
        CooldownState(
            floor_s=cfg.cooldown_floor_s,
            cap_s=cfg.cooldown_cap_s,
            halflife_s=cfg.cooldown_halflife_s,
            initial_s=max(cfg.base_backoff_s, 0.1),
        ),
        probe_s=max(0.1, cfg.base_backoff_s),
        # a refused connect costs the server nothing: probe at least every 2 s, so
        # an outage's end is noticed within 2 s (a blackholed probe takes TIMEOUT_S)
        max_probe_s=min(2.0, max(1.0, cfg.max_backoff_s / 4)),
        outage_budget_s=cfg.max_attempts * cfg.max_backoff_s if cfg.max_attempts else None,
        probe_timeout_s=cfg.timeout_s + 1.0,
    )
    cooldown = Cooldown(
        pause, cooldown_recv, pacer_send, None if admission is None else admission.others_up
    )
    channels = WorkerChannels(
        jobs=jobs,
        permits=permits[1],
        revocations=revocations[1],
        gate=gate,
        limiter=reports,
        pacer=pacer_send,
        cooldown=cooldown_send,
        watchdog=watchdog_send,
        watches=watches,
        revoking=revoking,
        admission=admission,
    )
    workers = [
        Worker(
            i,
            make_transport(url),
            channels,
            headers=headers,
            timeout_s=cfg.timeout_s,
            orphan=orphan,
            wall_clock=wall_clock,
        )
        for i in range(cap)
    ]
    watchdog = Watchdog(
        watchdog_recv, watches, [w.expire for w in workers], tick_s=min(1.0, cfg.timeout_s / 2)
    )
    tag = f" (endpoint {number})" if several else ""
    actors: Actors = [
        (f"Limiter{tag}", limiter.run),
        (f"Pacer{tag}", pacer.run),
        (f"Cooldown{tag}", cooldown.run),
        (f"Watchdog{tag}", watchdog.run),
        *((f"Worker {i}{tag}", w.run) for i, w in enumerate(workers)),
    ]
    return Endpoint(number, url, limiter, pacer, cooldown), actors
