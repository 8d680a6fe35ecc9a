"""``serve()``: the one function that wires a backend's actors and supervises them.

It opens the prompt cache's store, creates every channel, starts every actor of one
backend (the CacheWriter, the Limiter, the Pacer, the Cooldown, the Watchdog and
MAX_OUTSTANDING Workers) under one supervisor, and hands back a frozen
:class:`Runtime` handle (``task_status.started(runtime)``) that the request door
(:mod:`.request`) and ``statistics()`` use. Who talks to whom reads top to bottom here
and nowhere else (the messages are drawn in :mod:`minimallm.actors.messages`).

Supervision: the first actor that fails is recorded as a
:class:`~minimallm.BackendFailedError` naming it, the others are cancelled, and every
caller waiting on the runtime (for a Worker, for a reply, for a flush) and every later
one gets that same error; ``serve`` itself then raises it alone, never in an
ExceptionGroup. A stop (:meth:`Runtime.stop`) is not a failure: the Workers and flow
control stop first, then the CacheWriter makes its final commit, so an answer a caller
received before the stop is still stored.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import trio

import outcome
from minimallm._cache.stage import WRITE_BUFFER, CacheStage, open_cache, warn_cache
from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import BackendClosedError, BackendFailedError
from minimallm._http.proxy import proxy_secrets
from minimallm._http.transport import HttpTransport, request_headers, transport_factory_for
from minimallm._policy import (
    Binding,
    ConcurrencyControl,
    CooldownState,
    PacingSchedule,
    PauseControl,
    RateControl,
    binding,
)
from minimallm.actors.cache_writer import CacheRow, CacheWriter, Flush
from minimallm.actors.cooldown import Cooldown, CooldownMessage, CooldownStatistics
from minimallm.actors.limiter import Limiter, LimiterMessage, LimiterStatistics
from minimallm.actors.messages import AttemptStarted, Job
from minimallm.actors.pacer import Pacer, PacerMessage, PacerStatistics
from minimallm.actors.watchdog import Watchdog
from minimallm.actors.worker import Worker, WorkerChannels

__all__ = ["Life", "Runtime", "RuntimeOptions", "RuntimeStatistics", "serve"]

TransportFactory = Callable[[str], HttpTransport]

REPORT_BUFFER = 4096
"""Messages buffered for the Limiter, Pacer and Cooldown (each drains its inbox per
wake-up; bounded, and a Worker's report to the Limiter waits when it is full)."""

WATCHDOG_BUFFER = 65536
"""Attempt starts buffered for the Watchdog (it drains them at least once a second)."""


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Seams for tests: the HTTP transport (``transport_factory(url)``; see
    :mod:`minimallm.testing`), the jitter source, the wall clock."""

    transport_factory: TransportFactory | None = None  # None: transport_factory_for(cfg)
    rng: random.Random | None = None
    wall_clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """The runtime now: each flow-control actor's snapshot, callers waiting for a
    Worker, attempts on the wire, and which limit binds (None: none)."""

    limiter: LimiterStatistics
    pacer: PacerStatistics
    cooldown: CooldownStatistics
    callers_waiting: int
    in_flight: int
    binding: Binding | None


class Life:
    """The supervisor's record of one runtime: asked to stop, stopped, and the first
    actor failure. Shared by the supervisor (which writes it) and the callers (which
    read it); plain state, not an actor."""

    __slots__ = ("failure", "orders", "stop_requested", "stopped")

    def __init__(self) -> None:
        self.failure: BackendFailedError | None = None
        self.stop_requested = trio.Event()
        self.stopped = trio.Event()
        self.orders = 0
        """Requests numbered as they come: the Pacer serves older requests first."""

    @property
    def closed(self) -> bool:
        """True once a stop was asked for, the runtime ended, or an actor failed."""
        return self.stop_requested.is_set() or self.stopped.is_set() or self.failure is not None

    def record(self, name: str, exc: BaseException) -> None:
        """Actor ``name`` raised ``exc``: the first failure (a bug) is what every caller
        will be told. Recorded before the nursery cancels the other actors, so the jobs
        they hold are answered with it, not with a bland "closed"."""
        if self.failure is None and not isinstance(exc, trio.Cancelled | KeyboardInterrupt):
            self.failure = BackendFailedError(
                f"minimallm's {name} failed: {type(exc).__name__}: {exc}"
            )
            self.failure.__cause__ = exc

    def closed_error(self, what: str = "the minimallm runtime has stopped") -> Exception:
        """A fresh exception per caller: the failure (same message, same cause), or
        that the runtime stopped."""
        failure = self.failure
        if failure is None:
            return BackendClosedError(what)
        error = BackendFailedError(str(failure))
        error.__cause__ = failure.__cause__
        return error

    async def supervised(
        self,
        name: str,
        run: Callable[..., Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Run actor ``name``; a failure is recorded, then propagates (taking the
        runtime down)."""
        try:
            await run(task_status=task_status)
        except BaseException as exc:
            self.record(name, exc)
            raise


@dataclass(frozen=True, slots=True)
class Runtime:
    """The handle :func:`serve` hands back: what the request door needs (the job
    channel to the Workers, the cache stage, the jitter source) and the flow-control
    actors' snapshots. Frozen: the live state is in the actors and in :class:`Life`."""

    cfg: MinimaLlmConfig
    jobs: trio.MemorySendChannel[Job]
    cache: CacheStage | None
    rng: random.Random
    secrets: tuple[str, ...]  # the API key and the proxy's credentials: never shown
    life: Life
    limiter: Limiter
    pacer: Pacer
    cooldown: Cooldown

    def __repr__(self) -> str:
        state = "stopped" if self.life.stopped.is_set() else "running"
        return f"<Runtime {state} cache={self.cache!r}>"

    @property
    def running(self) -> bool:
        """Serving: calls may go straight in."""
        return not self.life.closed

    def stop(self) -> None:
        """Ask :func:`serve` to end (connections close, waiting calls get
        BackendClosedError, the CacheWriter commits what it holds)."""
        self.life.stop_requested.set()

    async def aclose(self) -> None:
        """Stop and wait until every actor has ended."""
        self.stop()
        await self.life.stopped.wait()

    async def flush(self) -> None:
        """Every answer so far is committed to the cache (no-op without one)."""
        if self.cache is not None:
            await self.cache.flush()

    def statistics(self) -> RuntimeStatistics:
        """A frozen snapshot of flow control now."""
        if self.life.stopped.is_set():
            raise BackendClosedError("the minimallm runtime is not running")
        lim = self.limiter.statistics()
        pac = self.pacer.statistics()
        coo = self.cooldown.statistics()
        queue = self.jobs.statistics()
        callers = queue.current_buffer_used + queue.tasks_waiting_send
        return RuntimeStatistics(
            limiter=lim,
            pacer=pac,
            cooldown=coo,
            callers_waiting=callers,
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
                callers_waiting=callers,
            ),
        )


async def serve(
    cfg: MinimaLlmConfig,
    options: RuntimeOptions | None = None,
    *,
    task_status: trio.TaskStatus[Runtime] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Open the store, create every channel, start every actor, hand back the
    :class:`Runtime`, and run until it is stopped or an actor fails (then raise that
    one :class:`~minimallm.BackendFailedError`)."""
    options = options or RuntimeOptions()
    life = Life()
    opened = await open_cache(cfg)  # None: no CACHE_DIR, or it cannot be used

    # -- channels -------------------------------------------------------------------
    cap = cfg.max_outstanding
    # Buffered: a caller hands its job over without waiting (and without a second
    # wake-up when a Worker takes it); it then waits once, for the reply.
    jobs_send, jobs_recv = trio.open_memory_channel[Job](cap)
    permits = trio.open_memory_channel[object](cap)
    revocations = trio.open_memory_channel[object](cap)  # "give a permit back" tokens
    limiter_send, limiter_recv = trio.open_memory_channel[LimiterMessage](REPORT_BUFFER)
    pacer_send, pacer_recv = trio.open_memory_channel[PacerMessage](REPORT_BUFFER)
    cooldown_send, cooldown_recv = trio.open_memory_channel[CooldownMessage](REPORT_BUFFER)
    watchdog_send, watchdog_recv = trio.open_memory_channel[AttemptStarted](WATCHDOG_BUFFER)
    gate = trio.open_memory_channel[object](1)  # holds the baton while unpaced
    writes_send, writes_recv = trio.open_memory_channel[CacheRow | Flush](WRITE_BUFFER)

    # -- actors ---------------------------------------------------------------------
    limiter = Limiter(
        ConcurrencyControl(cap),
        limiter_recv,
        permits,
        revocations,
        jobs_recv,
        (pacer_send, cooldown_send),
    )
    pacer = Pacer(PacingSchedule(cfg.rpm), RateControl(), pacer_recv, gate)
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
    cooldown = Cooldown(pause, cooldown_recv, pacer_send)
    channels = WorkerChannels(
        jobs=jobs_recv,
        permits=permits[1],
        revocations=revocations[1],
        gate=gate,
        limiter=limiter_send,
        pacer=pacer_send,
        cooldown=cooldown_send,
        watchdog=watchdog_send,
    )
    secret = cfg.api_key_value()
    headers = request_headers(secret, compress=cfg.compress_gzip)
    make_transport = options.transport_factory or transport_factory_for(cfg)
    url = cfg.chat_completions_url
    secrets = tuple(filter(None, (secret, *proxy_secrets(url, trust_env=cfg.trust_env_proxy))))

    def orphan(job: Job, exc: BaseException) -> None:
        """A Worker stopped while holding ``job`` (``exc``: why): tell its caller."""
        life.record("Worker", exc)
        job.reply.send(
            outcome.Error(life.closed_error("the minimallm runtime stopped during the request"))
        )

    workers = [
        Worker(
            i,
            make_transport(cfg.chat_completions_url),
            channels,
            headers=headers,
            timeout_s=cfg.timeout_s,
            orphan=orphan,
            wall_clock=options.wall_clock,
        )
        for i in range(cap)
    ]
    watchdog = Watchdog(
        watchdog_recv, [w.expire for w in workers], tick_s=min(1.0, cfg.timeout_s / 2)
    )
    actors: list[tuple[str, Callable[..., Awaitable[None]]]] = [
        ("Limiter", limiter.run),
        ("Pacer", pacer.run),
        ("Cooldown", cooldown.run),
        ("Watchdog", watchdog.run),
        *((f"Worker {i}", w.run) for i, w in enumerate(workers)),
    ]
    cache = None
    if opened is not None:
        store, sources = opened
        cache = CacheStage(
            cfg.model, store, writes_send, sources, force_refresh=cfg.force_refresh, secrets=secrets
        )
    runtime = Runtime(
        cfg,
        jobs_send,
        cache,
        options.rng or random.Random(),
        secrets,
        life,
        limiter,
        pacer,
        cooldown,
    )

    # -- one supervisor -------------------------------------------------------------
    try:
        async with trio.open_nursery() as last:  # the CacheWriter: stops last
            if opened is not None:
                writer = CacheWriter(opened[0], writes_recv, warn_cache)
                await last.start(life.supervised, "CacheWriter", writer.run)
            async with trio.open_nursery() as flow:
                for name, run in actors:
                    await flow.start(life.supervised, name, run)
                task_status.started(runtime)
                await life.stop_requested.wait()
                flow.cancel_scope.cancel()
            last.cancel_scope.cancel()
    except BaseException:
        if life.failure is None:
            raise  # cancelled from outside: the trio run is ending
        failure = life.closed_error()
        raise failure from failure.__cause__  # one clear error, never a group
    finally:
        # callers still waiting for a Worker learn it at once: those whose job is in
        # the queue by their reply, those still sending by the closed channel
        while True:
            try:
                job = jobs_recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            job.reply.send(outcome.Error(life.closed_error()))
        jobs_recv.close()
        life.stop_requested.set()
        life.stopped.set()
