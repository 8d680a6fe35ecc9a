"""The runtime: one nursery per backend per trio run, holding every actor.

:meth:`Runtime.serve` is the one place where channels are made and actors started,
so the whole wiring reads top to bottom. :meth:`Runtime.generate` is the request
path on trio: build the body once, then attempt → classify → back off → attempt,
each attempt admitted by the actors.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import trio

from minimallm._attempts import AttemptError, AttemptJob, AttemptReply, AttemptSuccess
from minimallm._config import MinimaLlmConfig
from minimallm._errors import BackendClosedError
from minimallm._policy import CooldownState, PacingSchedule, retry_delay
from minimallm._transport import (
    HttpTransport,
    SingleConnectionTransport,
    build_payload,
    encode_body,
    request_headers,
)
from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, MinimaLlmResult
from minimallm.actors import CooldownGate, Limiter, Overload, Pacer, Worker
from minimallm.actors.cooldown import CooldownStatistics
from minimallm.actors.limiter import LimiterStatistics

__all__ = ["Runtime", "RuntimeOptions", "RuntimeStatistics"]

TransportFactory = Callable[[str], HttpTransport]


@dataclass(frozen=True, slots=True)
class RuntimeOptions:
    """Seams for tests: the HTTP transport, the jitter source, the wall clock."""

    transport_factory: TransportFactory = SingleConnectionTransport
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
        self._jobs: trio.MemorySendChannel[AttemptJob] | None = None
        self._pending: set[AttemptReply] = set()
        self._limiter: Limiter | None = None
        self._gate: CooldownGate | None = None
        self.failure: BaseException | None = None

    def __repr__(self) -> str:
        state = (
            "stopped" if self._stopped.is_set() else "running" if self._ready.is_set() else "new"
        )
        return f"<Runtime {state} pending={len(self._pending)} {self._limiter!r} {self._gate!r}>"

    @property
    def closed(self) -> bool:
        """True once a stop was asked for or the runtime ended."""
        return self._stop_requested.is_set() or self._stopped.is_set()

    # -- lifecycle ----------------------------------------------------------------------

    async def serve(self) -> None:
        """Wire every channel and actor in one nursery; run until :meth:`stop`."""
        cfg = self._cfg
        n_workers = cfg.max_outstanding
        try:
            async with trio.open_nursery() as nursery:
                jobs_send, to_limiter = trio.open_memory_channel[AttemptJob](0)
                limiter_out, to_gate = trio.open_memory_channel[AttemptJob](0)
                gate_out, to_pacer = trio.open_memory_channel[AttemptJob](0)
                # At most one token per attempt in flight and one overload report per
                # attempt between two admissions: both buffers are bounded by n_workers.
                tokens_send, tokens_recv = trio.open_memory_channel[None](n_workers)
                overload_send, overload_recv = trio.open_memory_channel[Overload](n_workers)

                self._limiter = Limiter(n_workers, to_limiter, limiter_out, tokens_recv)
                self._gate = CooldownGate(
                    CooldownState(
                        floor_s=cfg.cooldown_floor_s,
                        cap_s=cfg.cooldown_cap_s,
                        halflife_s=cfg.cooldown_halflife_s,
                        initial_s=max(cfg.base_backoff_s, 0.1),
                    ),
                    to_gate,
                    gate_out,
                    overload_recv,
                )
                await nursery.start(self._limiter.run)
                await nursery.start(self._gate.run)
                if cfg.rpm > 0:
                    pacer_out, to_workers = trio.open_memory_channel[AttemptJob](0)
                    await nursery.start(Pacer(PacingSchedule(cfg.rpm), to_pacer, pacer_out).run)
                else:
                    to_workers = to_pacer
                url = cfg.chat_completions_url
                for _ in range(n_workers):
                    worker = Worker(
                        self._options.transport_factory(url),
                        cfg.timeout_s,
                        to_workers.clone(),
                        tokens_send.clone(),
                        overload_send.clone(),
                        self._options.wall_clock,
                    )
                    await nursery.start(worker.run)
                await to_workers.aclose()
                await tokens_send.aclose()
                await overload_send.aclose()
                self._jobs = jobs_send
                self._ready.set()
                await self._stop_requested.wait()
                await jobs_send.aclose()
                nursery.cancel_scope.cancel()
        finally:
            self._stopped.set()
            self._ready.set()  # wake anyone waiting for a start that will not come
            for reply in list(self._pending):
                reply.resolve(None)

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
        assert self._limiter is not None and self._gate is not None, "runtime not started"
        return RuntimeStatistics(self._limiter.statistics(), self._gate.statistics())

    def stall_view(self) -> tuple[int | None, int | None, float, int]:
        """(HTTP in flight, limit, cooldown deadline, overloads) for stall warnings."""
        if self._limiter is None or self._gate is None:
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

    async def _one_attempt(
        self, body: bytes, sent_at: list[float]
    ) -> AttemptSuccess | AttemptError:
        if self._jobs is None or self.closed:
            raise BackendClosedError("the minimallm runtime has stopped")
        reply = AttemptReply()
        self._pending.add(reply)
        try:
            try:
                await self._jobs.send(AttemptJob(body, self._headers, reply))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                raise BackendClosedError("the minimallm runtime has stopped") from None
            outcome = await reply.wait()
        except BaseException:
            reply.abandon()
            raise
        finally:
            self._pending.discard(reply)
        if reply.sent_at is not None:
            sent_at.append(reply.sent_at)
        if outcome is None:
            raise BackendClosedError("the minimallm runtime stopped during the request")
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
