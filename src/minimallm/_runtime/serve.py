"""``serve()``: the one function that wires a backend's actors and supervises them.

It opens the prompt cache's store (with CACHE_DIR set: only then are the cache's
modules and SQLite imported), creates every channel, starts every actor of one backend
(the CacheWriter, and for each endpoint of the model a Limiter, a Pacer, a Cooldown, a
Watchdog and MAX_OUTSTANDING Workers: :mod:`.endpoint`) under one supervisor, and hands
back a frozen :class:`Runtime` handle (``task_status.started(runtime)``) that the
request door (:mod:`.request`) and ``statistics()`` use. Who talks to whom reads top to
bottom here and nowhere else (the messages are drawn in :mod:`minimallm.actors.messages`).

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
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import trio

import outcome
from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import BackendClosedError, BackendFailedError, ServerWaitWarning
from minimallm._http.proxy import proxy_secrets
from minimallm._http.transport import HttpTransport, request_headers, transport_factory_for
from minimallm._policy import Binding, PacingSchedule
from minimallm._policy.retrying import RetryPolicy
from minimallm._runtime.endpoint import (
    REPORT_BUFFER,
    Endpoint,
    EndpointStatistics,
    build_endpoint,
)
from minimallm._runtime.tokens import TokenGate
from minimallm.actors.admission import Admission
from minimallm.actors.cooldown import Cooldown, CooldownStatistics
from minimallm.actors.jobs import JobQueue
from minimallm.actors.limiter import Limiter, LimiterStatistics
from minimallm.actors.messages import ItemJob, Job
from minimallm.actors.pacer import Pacer, PacerStatistics

if TYPE_CHECKING:  # imported by serve() only when the prompt cache is used (SQLite…)
    from minimallm._cache.stage import CacheStage

__all__ = [
    "REPORT_BUFFER",
    "Life",
    "Runtime",
    "RuntimeOptions",
    "RuntimeStatistics",
    "serve",
]

TransportFactory = Callable[[str], HttpTransport]


class RuntimeOptions(NamedTuple):
    """Seams for tests: the HTTP transport (``transport_factory(url)``; see
    :mod:`minimallm.testing`), the jitter source, the wall clock."""

    transport_factory: TransportFactory | None = None  # None: transport_factory_for(cfg)
    rng: random.Random | None = None
    wall_clock: Callable[[], float] = time.time


class RuntimeStatistics(NamedTuple):
    """The runtime now: each flow-control actor's snapshot (the first endpoint's),
    callers waiting for a Worker, attempts on the wire (all endpoints), which limit
    binds (None: none), and each endpoint's state."""

    limiter: LimiterStatistics
    pacer: PacerStatistics
    cooldown: CooldownStatistics
    callers_waiting: int
    in_flight: int
    binding: Binding | None
    endpoints: tuple[EndpointStatistics, ...] = ()
    """Each endpoint's state (one entry with one endpoint)."""


class Life:
    """The supervisor's record of one runtime: asked to stop, stopped, and the first
    actor failure. Shared by the supervisor (which writes it) and the callers (which
    read it); plain state, not an actor."""

    __slots__ = ("closed", "failure", "orders", "stop_requested", "stopped")

    def __init__(self) -> None:
        self.failure: BackendFailedError | None = None
        self.stop_requested = trio.Event()
        self.stopped = trio.Event()
        self.closed = False
        """True once a stop was asked for, the runtime ended, or an actor failed (read
        by every attempt: a plain attribute, set by :meth:`stop` and :meth:`record`)."""
        self.orders = 0
        """Requests numbered as they come: the Pacer serves older requests first."""

    def stop(self) -> None:
        """Ask the runtime to stop (idempotent)."""
        self.closed = True
        self.stop_requested.set()

    def record(self, name: str, exc: BaseException) -> None:
        """Actor ``name`` raised ``exc``: the first failure (a bug) is what every caller
        will be told. Recorded before the nursery cancels the other actors, so the jobs
        they hold are answered with it, not with a bland "closed"."""
        if self.failure is None and not isinstance(exc, trio.Cancelled | KeyboardInterrupt):
            self.closed = True
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


@dataclass(frozen=True, slots=True, eq=False, repr=False)  # a handle: equal to itself only
class Runtime:
    """The handle :func:`serve` hands back: what the request door needs (the job
    queue to the Workers, the cache stage, the jitter source) and the flow-control
    actors' snapshots. Frozen: the live state is in the actors and in :class:`Life`."""

    cfg: MinimaLlmConfig
    jobs: JobQueue
    cache: CacheStage | None
    rng: random.Random
    secrets: tuple[str, ...]  # the API key and the proxy's credentials: never shown
    life: Life
    limiter: Limiter  # the first endpoint's (the only one's, usually)
    pacer: Pacer
    cooldown: Cooldown
    retry: RetryPolicy
    endpoints: tuple[Endpoint, ...] = ()  # every endpoint's flow control, as listed
    tokens: TokenGate | None = None  # TPM (None: no token budget)

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
        self.life.stop()

    async def aclose(self) -> None:
        """Stop and wait until every actor has ended."""
        self.stop()
        await self.life.stopped.wait()

    async def flush(self) -> None:
        """Every answer so far is committed to the cache (no-op without one)."""
        if self.cache is not None:
            await self.cache.flush()

    def statistics(self) -> RuntimeStatistics:
        """A frozen snapshot of flow control now (with several endpoints, ``limiter``,
        ``pacer`` and ``cooldown`` are the first one's; ``endpoints`` has each)."""
        if self.life.stopped.is_set():
            raise BackendClosedError("the minimallm runtime is not running")
        callers = self.jobs.statistics().current_buffer_used
        each = tuple(e.statistics(callers) for e in self.endpoints)
        first = each[0]
        return RuntimeStatistics(
            limiter=first.limiter,
            pacer=first.pacer,
            cooldown=first.cooldown,
            callers_waiting=callers,
            in_flight=sum(e.in_flight for e in each),
            binding=first.binding if len(each) == 1 else _fleet_binding(each),
            endpoints=each,
        )


def _fleet_binding(each: tuple[EndpointStatistics, ...]) -> Binding | None:
    """Several endpoints: every held one, named ("replica 2: outage: no server for 12s,
    probing; replica 3: cooldown …"), else the first that binds."""
    bound = [e for e in each if e.binding is not None]
    held = [e for e in bound if e.state != "open"]
    named = [
        (e.binding, f"replica {e.number}: {e.binding.text}") for e in held or bound[:1] if e.binding
    ]
    if not named:
        return None
    return Binding(named[0][0].limit, "; ".join(text for _, text in named))


def refuse(job: Job | ItemJob, error: Exception) -> None:
    """Tell ``job``'s caller the runtime cannot serve it (``error``)."""
    if isinstance(job, Job):
        job.reply.send(outcome.Error(error))
    elif not job.cancelled:
        job.fail(error)


def _warn_long_wait(message: str) -> None:
    warnings.warn(f"minimallm: {message}", ServerWaitWarning, stacklevel=2)


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
    secret = cfg.api_key_value()
    url = cfg.chat_completions_url
    secrets = tuple(filter(None, (secret, *proxy_secrets(url, trust_env=cfg.trust_env_proxy))))
    cached = None  # the prompt cache's stage and its CacheWriter
    if cfg.cache_dir is not None:  # its modules (SQLite…) are imported only when it is used
        from minimallm._cache.stage import open_stage

        cached = await open_stage(cfg, secrets)  # None: it cannot be used (warned)

    # -- channels -------------------------------------------------------------------
    urls = cfg.chat_completions_urls
    several = len(urls) > 1
    # A caller hands its job over without waiting (and without a second wake-up when
    # a Worker takes it); it then waits once, for the reply. One queue for every
    # endpoint's Workers (see _runtime/endpoint.py).
    jobs = JobQueue()
    headers = request_headers(secret, compress=cfg.compress_gzip)
    make_transport = options.transport_factory or transport_factory_for(cfg)

    def orphan(job: Job | ItemJob, exc: BaseException) -> None:
        """A Worker stopped while holding ``job`` (``exc``: why): tell its caller."""
        life.record("Worker", exc)
        refuse(job, life.closed_error("the minimallm runtime stopped during the request"))

    # -- actors: one flow-control set per endpoint ------------------------------------
    endpoints: list[Endpoint] = []
    actors: list[tuple[str, Callable[..., Awaitable[None]]]] = []
    fleet: list[Admission] | None = [] if several else None  # each endpoint's Admission
    rpm = PacingSchedule(cfg.rpm)  # RPM is one total for the key: one schedule for all
    for number, url in enumerate(urls, 1):
        endpoint, its_actors = build_endpoint(
            cfg,
            number,
            url,
            jobs,
            fleet=fleet,
            rpm=rpm,
            make_transport=make_transport,
            headers=headers,
            orphan=orphan,
            wall_clock=options.wall_clock,
        )
        endpoints.append(endpoint)
        actors.extend(its_actors)
    cache = None if cached is None else cached[0]
    first = endpoints[0]
    rng = options.rng or random.Random()
    runtime = Runtime(
        cfg,
        jobs,
        cache,
        rng,
        secrets,
        life,
        first.limiter,
        first.pacer,
        first.cooldown,
        RetryPolicy(
            max_attempts=cfg.max_attempts,
            base_s=cfg.base_backoff_s,
            max_s=cfg.max_backoff_s,
            jitter=cfg.jitter,
            cap_s=cfg.cooldown_cap_s,
            max_wait_s=cfg.max_wait_s,
            rng=rng,
            on_long_wait=_warn_long_wait,
        ),
        tuple(endpoints),
        TokenGate(cfg.tpm) if cfg.tpm else None,
    )

    # -- one supervisor -------------------------------------------------------------
    try:
        async with trio.open_nursery() as last:  # the CacheWriter: stops last
            if cached is not None:
                await last.start(life.supervised, "CacheWriter", cached[1].run)
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
        # the queue by their reply, later ones by the closed queue
        jobs.close()
        while (job := jobs.take_nowait()) is not None:
            refuse(job, life.closed_error())
        life.stop()
        life.stopped.set()
