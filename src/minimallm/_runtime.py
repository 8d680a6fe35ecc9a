"""The runtime: one nursery per backend per trio run, holding every actor.

:meth:`Runtime.serve` is the one place where actors are built and started, so the
whole wiring reads top to bottom. :meth:`Runtime.generate` is the request path on
trio: build the body once, then admit → attempt → classify → back off → admit …;
each attempt is admitted by the Admission actor and runs on the Worker it lends
(in the caller's own task, see ``actors/admission.py``).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from minimallm._attempts import AttemptError, AttemptOutcome, AttemptSuccess
from minimallm._config import MinimaLlmConfig
from minimallm._errors import BackendClosedError
from minimallm._policy import CooldownState, PacingSchedule, retry_delay
from minimallm._transport import (
    HttpTransport,
    build_payload,
    encode_body,
    request_headers,
    transport_factory_for,
)
from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, MinimaLlmResult
from minimallm.actors import Admission, Cooldown, Limiter, Pacer, Watchdog, Worker
from minimallm.actors.cooldown import CooldownStatistics
from minimallm.actors.limiter import LimiterStatistics

__all__ = ["Runtime", "RuntimeOptions", "RuntimeStatistics"]

TransportFactory = Callable[[str], HttpTransport]


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Seams for tests: the HTTP transport, the jitter source, the wall clock."""

    transport_factory: TransportFactory | None = None  # None: transport_factory_for(cfg)
    rng: random.Random | None = None
    wall_clock: Callable[[], float] = time.time


@dataclass(frozen=True, slots=True)
class RuntimeStatistics:
    """Live state for progress and stall messages."""

    limiter: LimiterStatistics
    cooldown: CooldownStatistics


class Runtime:
    """Actors and request path of one backend inside one trio run."""

    def __init__(self, cfg: MinimaLlmConfig, options: RuntimeOptions) -> None:
        self._cfg = cfg
        self._options = options
        self._rng = options.rng or random.Random()
        self._headers = request_headers(cfg.api_key_value(), compress=cfg.compress_gzip)
        self._secret = cfg.api_key_value()
        self._ready = trio.Event()
        self._stopped = trio.Event()
        self._stop_requested = trio.Event()
        self._admission: Admission | None = None
        self.failure: BaseException | None = None

    def __repr__(self) -> str:
        state = (
            "stopped" if self._stopped.is_set() else "running" if self._ready.is_set() else "new"
        )
        return f"<Runtime {state} {self._admission!r}>"

    @property
    def closed(self) -> bool:
        """True once a stop was asked for or the runtime ended."""
        return self._stop_requested.is_set() or self._stopped.is_set()

    # -- lifecycle ----------------------------------------------------------------------

    async def serve(self) -> None:
        """Build every actor and start it in one nursery; run until :meth:`stop`."""
        cfg = self._cfg
        url = cfg.chat_completions_url
        watchdog = Watchdog()
        make_transport = self._options.transport_factory or transport_factory_for(cfg)
        workers = [
            Worker(
                make_transport(url),
                cfg.timeout_s,
                self._options.wall_clock,
                watchdog,
            )
            for _ in range(cfg.max_outstanding)
        ]
        watchdog.watch(workers)
        cooldown = CooldownState(
            floor_s=cfg.cooldown_floor_s,
            cap_s=cfg.cooldown_cap_s,
            halflife_s=cfg.cooldown_halflife_s,
            initial_s=max(cfg.base_backoff_s, 0.1),
        )
        admission = Admission(Limiter(workers), Cooldown(cooldown), Pacer(PacingSchedule(cfg.rpm)))
        self._admission = admission
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(admission.run)
                await nursery.start(watchdog.run)
                self._ready.set()
                await self._stop_requested.wait()
                nursery.cancel_scope.cancel()
        finally:
            admission.close()  # callers waiting in line: BackendClosedError
            for worker in workers:
                worker.stop()  # attempts in flight end; their callers: BackendClosedError
            with trio.CancelScope(shield=True):
                for worker in workers:
                    await worker.aclose()
            self._stopped.set()
            self._ready.set()  # wake anyone waiting for a start that will not come

    async def wait_ready(self) -> None:
        """Wait until the actors run; raise BackendClosedError if the runtime ended."""
        await self._ready.wait()
        if self._stopped.is_set():
            raise BackendClosedError("the minimallm runtime has stopped") from self.failure

    def stop(self) -> None:
        """Ask the runtime to end (connections close, waiting calls get BackendClosedError)."""
        self._stop_requested.set()

    async def aclose(self) -> None:
        """Stop and wait until every actor has ended."""
        self.stop()
        await self._stopped.wait()

    def statistics(self) -> RuntimeStatistics:
        """Limiter and cooldown state now (for stall messages)."""
        assert self._admission is not None, "runtime not started"
        return RuntimeStatistics(
            self._admission.limiter.statistics(), self._admission.cooldown.statistics()
        )

    def stall_view(self) -> tuple[int | None, int | None, float, int]:
        """(HTTP in flight, limit, cooldown deadline, overloads) for stall warnings."""
        if self._admission is None:
            return None, None, 0.0, 0
        stats = self.statistics()
        return (
            stats.limiter.in_flight,
            stats.limiter.limit,
            stats.cooldown.deadline,
            stats.cooldown.overloads,
        )

    # -- the request path ---------------------------------------------------------------

    async def generate(
        self, req: MinimaLlmRequest, *, force_refresh: bool = False
    ) -> MinimaLlmResult:
        """Attempt until success, a final failure, or MAX_ATTEMPTS (0 = no limit)."""
        return (await self.generate_traced(req, force_refresh=force_refresh))[0]

    async def generate_traced(
        self, req: MinimaLlmRequest, *, force_refresh: bool = False
    ) -> tuple[MinimaLlmResult, int]:
        """:meth:`generate`, also returning how many HTTP attempts were sent."""
        del force_refresh  # meaningful once the cache is wired in
        cfg = self._cfg
        body = encode_body(build_payload(cfg.model, req), compress=cfg.compress_gzip)
        sent_at: list[float] = []
        attempt = 0
        while True:
            attempt += 1
            outcome = await self._one_attempt(body, sent_at)
            if isinstance(outcome, AttemptSuccess):
                response = MinimaLlmResponse(
                    req.request_id,
                    outcome.text,
                    outcome.raw,
                    False,
                    outcome.prompt_tokens,
                    outcome.completion_tokens,
                    outcome.total_tokens,
                )
                return response, len(sent_at)
            if not outcome.retryable or (cfg.max_attempts and attempt >= cfg.max_attempts):
                return self._failure(req, outcome, attempt, sent_at), len(sent_at)
            await trio.sleep(
                retry_delay(
                    attempt,
                    outcome.retry_after_s,
                    base_s=cfg.base_backoff_s,
                    max_s=cfg.max_backoff_s,
                    jitter=cfg.jitter,
                    cap_s=cfg.cooldown_cap_s,
                    rng=self._rng,
                )
            )

    async def _one_attempt(self, body: bytes, sent_at: list[float]) -> AttemptOutcome:
        admission = self._admission
        if admission is None or self.closed:
            raise BackendClosedError("the minimallm runtime has stopped")
        worker = admission.try_admit() or await admission.admit()
        outcome: AttemptOutcome | None = None
        try:
            outcome = await worker.attempt(self._headers, body)
            sent_at.append(worker.sent_at)
        finally:
            admission.finish(worker, outcome)
        return outcome

    def _failure(
        self, req: MinimaLlmRequest, outcome: AttemptError, attempts: int, sent_at: list[float]
    ) -> MinimaLlmFailure:
        return MinimaLlmFailure(
            request_id=req.request_id,
            error_type=outcome.error_type,
            message=self._redact(outcome.message),
            attempts=attempts,
            status=outcome.status,
            body_snippet=None
            if outcome.body_snippet is None
            else self._redact(outcome.body_snippet),
            timeout_s=self._cfg.timeout_s,
            attempt_timestamps=tuple(sent_at),
        )

    def _redact(self, text: str) -> str:
        """A server that echoes the key back must not leak it into a failure."""
        if self._secret and self._secret in text:
            return text.replace(self._secret, "***")
        return text
