"""The runtime: every actor of one backend in one trio run, and the request path.

:meth:`Runtime.serve` is the one place that creates the channels and starts the actors,
so who talks to whom reads top to bottom. :meth:`Runtime.generate_traced` is one
request's whole path on this side: encode the body once, then, attempt after attempt,
hand a :class:`~minimallm.actors.messages.Job` to the Worker pool and wait for its
:class:`~minimallm.actors.messages.Reply`, classify, back off. What happens between
(permit, slot, socket) is in ``actors/worker.py``; flow control in ``actors/limiter.py``,
``actors/pacer.py``, ``actors/cooldown.py`` and their pure cores in ``_policy/``.

One request on the hot path costs three task switches: the Worker wakes for the job,
the Worker wakes when the answer arrives, the caller wakes for the reply. The Limiter,
Pacer and Cooldown read their reports in bursts (one wake-up per many answers) and the
Watchdog wakes about once a second; measured in ``benchmarks/``.

Supervision: an actor that fails takes the runtime down; every caller waiting on it
gets a :class:`~minimallm.BackendFailedError` naming the actor and the error, later
callers the same error, never an ExceptionGroup.
"""

from __future__ import annotations

import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import trio

import outcome
from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import BackendClosedError, BackendFailedError, InvalidRequestError
from minimallm._http.transport import HttpTransport, request_headers, transport_factory_for
from minimallm._outcome.attempts import AttemptError, AttemptOutcome, AttemptSuccess
from minimallm._outcome.redact import MESSAGE_CHARS, redacted_raw, snippet
from minimallm._policy import (
    Binding,
    ConcurrencyControl,
    CooldownState,
    PacingSchedule,
    PauseControl,
    RateControl,
    binding,
    retry_delay,
)
from minimallm._requests import encode_request, reask_request
from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, MinimaLlmResult
from minimallm.actors.cooldown import Cooldown, CooldownMessage, CooldownStatistics
from minimallm.actors.limiter import Limiter, LimiterMessage, LimiterStatistics
from minimallm.actors.messages import AttemptStarted, Job, Reply
from minimallm.actors.pacer import Pacer, PacerMessage, PacerStatistics
from minimallm.actors.watchdog import Watchdog
from minimallm.actors.worker import Worker, WorkerChannels

__all__ = ["Runtime", "RuntimeOptions", "RuntimeStatistics", "Traced"]

TransportFactory = Callable[[str], HttpTransport]

REPORT_BUFFER = 4096
"""Messages buffered for the Pacer and the Cooldown (each drains its inbox per wake-up)."""

WATCHDOG_BUFFER = 65536
"""Attempt starts buffered for the Watchdog (it drains them at least once a second)."""


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Seams for tests: the HTTP transport, the jitter source, the wall clock."""

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


class Traced(NamedTuple):
    """One request's result, the HTTP attempts it took, and when the first went out
    (trio time, seconds; None when none did: a cache hit, an invalid request)."""

    result: MinimaLlmResult
    attempts: int
    first_sent_at: float | None


@dataclass(frozen=True, slots=True)
class _Actors:
    """Handles the runtime keeps for ``statistics()`` (snapshots only)."""

    limiter: Limiter
    pacer: Pacer
    cooldown: Cooldown
    jobs: trio.MemorySendChannel[Job]


class Runtime:
    """Actors and request path of one backend inside one trio run."""

    __slots__ = (
        "_actors",
        "_cfg",
        "_failure",
        "_headers",
        "_options",
        "_orders",
        "_ready",
        "_rng",
        "_secret",
        "_stop_requested",
        "_stopped",
    )

    def __init__(self, cfg: MinimaLlmConfig, options: RuntimeOptions) -> None:
        self._cfg = cfg
        self._options = options
        self._rng = options.rng or random.Random()
        self._headers = request_headers(cfg.api_key_value(), compress=cfg.compress_gzip)
        self._secret = cfg.api_key_value()
        self._ready = trio.Event()
        self._stopped = trio.Event()
        self._stop_requested = trio.Event()
        self._actors: _Actors | None = None
        self._failure: BackendFailedError | None = None
        self._orders = 0  # requests numbered as they come

    def __repr__(self) -> str:
        state = (
            "stopped" if self._stopped.is_set() else "running" if self._ready.is_set() else "new"
        )
        return f"<Runtime {state}>"

    @property
    def closed(self) -> bool:
        """True once a stop was asked for or the runtime ended."""
        return self._stop_requested.is_set() or self._stopped.is_set()

    @property
    def failure(self) -> BackendFailedError | None:
        """Why the runtime ended, if an actor failed."""
        return self._failure

    # -- the wiring -----------------------------------------------------------------------

    async def serve(self) -> None:
        """Create every channel, start every actor, run until :meth:`stop`."""
        cfg = self._cfg
        cap = cfg.max_outstanding
        jobs_in, jobs_out = trio.open_memory_channel[Job](0)  # a caller waits for a Worker
        permits = trio.open_memory_channel[object](cap)
        revocations = trio.open_memory_channel[object](cap)  # "give a permit back" tokens
        limiter_in, limiter_out = trio.open_memory_channel[LimiterMessage](REPORT_BUFFER)
        pacer_in, pacer_out = trio.open_memory_channel[PacerMessage](REPORT_BUFFER)
        cooldown_in, cooldown_out = trio.open_memory_channel[CooldownMessage](REPORT_BUFFER)
        watchdog_in, watchdog_out = trio.open_memory_channel[AttemptStarted](WATCHDOG_BUFFER)
        gate = trio.open_memory_channel[object](1)  # holds the baton while unpaced

        limiter = Limiter(
            ConcurrencyControl(cap),
            limiter_out,
            permits,
            revocations,
            jobs_out,
            (pacer_in, cooldown_in),
        )
        pacer = Pacer(PacingSchedule(cfg.rpm), RateControl(), pacer_out, gate)
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
        cooldown = Cooldown(pause, cooldown_out, pacer_in)
        channels = WorkerChannels(
            jobs=jobs_out,
            permits=permits[1],
            revocations=revocations[1],
            gate=gate,
            limiter=limiter_in,
            pacer=pacer_in,
            cooldown=cooldown_in,
            watchdog=watchdog_in,
        )
        url = cfg.chat_completions_url
        make_transport = self._options.transport_factory or transport_factory_for(cfg)
        workers = [
            Worker(
                i,
                make_transport(url),
                channels,
                headers=self._headers,
                timeout_s=cfg.timeout_s,
                orphan=self._orphan,
                wall_clock=self._options.wall_clock,
            )
            for i in range(cap)
        ]
        watchdog = Watchdog(
            watchdog_out, [w.expire for w in workers], tick_s=min(1.0, cfg.timeout_s / 2)
        )
        actors: list[tuple[str, Callable[..., Awaitable[None]]]] = [
            ("Limiter", limiter.run),
            ("Pacer", pacer.run),
            ("Cooldown", cooldown.run),
            ("Watchdog", watchdog.run),
            *((f"Worker {i}", w.run) for i, w in enumerate(workers)),
        ]
        try:
            async with trio.open_nursery() as nursery:
                for name, run in actors:
                    await nursery.start(self._supervised, name, run)
                self._actors = _Actors(limiter, pacer, cooldown, jobs_in)
                self._ready.set()
                await self._stop_requested.wait()
                nursery.cancel_scope.cancel()
        except BaseException as exc:
            if self._failure is None:
                raise
            raise self._failure from exc  # one clear error, never a group
        finally:
            jobs_out.close()  # callers still waiting for a Worker learn it at once
            self._stopped.set()
            self._ready.set()  # wake anyone waiting for a start that will not come

    async def _supervised(
        self,
        name: str,
        run: Callable[..., Awaitable[None]],
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        try:
            await run(task_status=task_status)
        except BaseException as exc:
            self._record_failure(name, exc)
            raise

    def _record_failure(self, name: str, exc: BaseException) -> None:
        """The first actor failure (a bug) is what every caller will be told; it is
        recorded before the nursery cancels the other actors, so the jobs they hold
        are answered with it, not with a bland "closed"."""
        if self._failure is None and not isinstance(exc, trio.Cancelled | KeyboardInterrupt):
            self._failure = BackendFailedError(
                f"minimallm's {name} failed: {type(exc).__name__}: {exc}"
            )
            self._failure.__cause__ = exc

    def _closed_error(self, what: str = "the minimallm runtime has stopped") -> Exception:
        """A fresh exception per caller: the runtime's failure, or that it stopped."""
        failure = self._failure
        if failure is None:
            return BackendClosedError(what)
        error = BackendFailedError(str(failure))
        error.__cause__ = failure.__cause__
        return error

    def _orphan(self, job: Job, exc: BaseException) -> None:
        """A Worker stopped while holding ``job`` (``exc``: why): tell its caller."""
        self._record_failure("Worker", exc)
        job.reply.send(
            outcome.Error(self._closed_error("the minimallm runtime stopped during the request"))
        )

    # -- lifecycle ------------------------------------------------------------------------

    async def wait_ready(self) -> None:
        """Wait until the actors run; raise BackendClosedError if the runtime ended."""
        await self._ready.wait()
        if self._stopped.is_set():
            raise self._closed_error()

    def stop(self) -> None:
        """Ask the runtime to end (connections close, waiting calls get BackendClosedError)."""
        self._stop_requested.set()

    async def aclose(self) -> None:
        """Stop and wait until every actor has ended."""
        self.stop()
        await self._stopped.wait()

    def statistics(self) -> RuntimeStatistics:
        """A frozen snapshot of flow control now."""
        actors = self._actors
        if actors is None:
            raise BackendClosedError("the minimallm runtime is not running")
        lim = actors.limiter.statistics()
        pac = actors.pacer.statistics()
        coo = actors.cooldown.statistics()
        callers = actors.jobs.statistics().tasks_waiting_send
        now = trio.current_time()
        return RuntimeStatistics(
            limiter=lim,
            pacer=pac,
            cooldown=coo,
            callers_waiting=callers,
            in_flight=max(0, lim.busy - pac.waiting),
            binding=binding(
                now=now,
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

    # -- the request path -----------------------------------------------------------------

    async def generate(self, req: MinimaLlmRequest) -> MinimaLlmResult:
        """Attempt until success, a final failure, or MAX_ATTEMPTS (0 = no limit)."""
        return (await self.generate_traced(req)).result

    async def generate_traced(
        self,
        req: MinimaLlmRequest,
        *,
        events: trio.MemorySendChannel[Any] | None = None,
        index: int | None = None,
        reask: int = 0,
    ) -> Traced:
        """:meth:`generate`, with the attempts it took; ``events``: a batch Monitor's
        inbox that gets every attempt's report; ``index``: the request's place in its
        batch (named when the request is invalid); ``reask``: the number of this forced
        refresh (0: none), which sends a seed and a rising temperature
        (``_requests.reask_request``)."""
        cfg = self._cfg
        if reask:
            req = reask_request(
                req, reask, cfg.retry_temperature_max, cfg.retry_temperature_halflife
            )
        try:
            body = encode_request(cfg.model, req, compress=cfg.compress_gzip, index=index)
        except InvalidRequestError as exc:
            return Traced(invalid_request(req, index, exc), 0, None)
        sent_at: list[float] = []
        order = self._orders = self._orders + 1  # the Pacer serves older requests first
        while True:
            result, sent = await self._attempt(body, events, order)
            if isinstance(result, AttemptSuccess):
                sent_at.append(sent)
                response = MinimaLlmResponse(
                    req.request_id,
                    result.text,
                    result.raw,
                    False,
                    result.prompt_tokens,
                    result.completion_tokens,
                    result.total_tokens,
                )
                return Traced(response, len(sent_at), sent_at[0])
            if result.excused:
                continue  # the client's own probe of a server it believes down
            sent_at.append(sent)
            attempt = len(sent_at)
            if not result.retryable or (cfg.max_attempts and attempt >= cfg.max_attempts):
                return Traced(self._failure_of(req, result, attempt, sent_at), attempt, sent_at[0])
            await trio.sleep(
                retry_delay(
                    attempt,
                    result.retry_after_s,
                    base_s=cfg.base_backoff_s,
                    max_s=cfg.max_backoff_s,
                    jitter=cfg.jitter,
                    cap_s=cfg.cooldown_cap_s,
                    rng=self._rng,
                )
            )

    async def _attempt(
        self, body: bytes, events: trio.MemorySendChannel[Any] | None, order: int
    ) -> tuple[AttemptOutcome, float]:
        actors = self._actors
        if actors is None or self.closed:
            raise self._closed_error()
        reply: Reply[tuple[AttemptOutcome, float]] = Reply()
        job = Job(body, reply, events, order)
        try:
            actors.jobs.send_nowait(job)
        except trio.WouldBlock:
            try:
                await actors.jobs.send(job)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise self._closed_error() from None
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise self._closed_error() from None
        return await reply.receive()

    def _failure_of(
        self, req: MinimaLlmRequest, result: AttemptError, attempts: int, sent_at: list[float]
    ) -> MinimaLlmFailure:
        secret = self._secret
        body = result.body_snippet
        return MinimaLlmFailure(
            request_id=req.request_id,
            error_type=result.error_type,
            message=snippet(result.message, secret, MESSAGE_CHARS, marker="…"),
            attempts=attempts,
            status=result.status,
            body_snippet=None if body is None else snippet(body, secret),
            timeout_s=self._cfg.timeout_s,
            attempt_timestamps=tuple(sent_at),
            raw=None if result.raw is None else redacted_raw(result.raw, secret),
        )


def invalid_request(req: object, index: int | None, exc: InvalidRequestError) -> MinimaLlmFailure:
    """The failure value of a request that cannot be sent (never an exception)."""
    request_id = getattr(req, "request_id", None)
    if not isinstance(request_id, str):
        request_id = f"item-{index}" if index is not None else "request"
    return MinimaLlmFailure(
        request_id=request_id, error_type="InvalidRequest", message=str(exc), attempts=0
    )
