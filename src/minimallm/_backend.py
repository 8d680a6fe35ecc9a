"""OpenAIMinimaLlm: the documented backend, one object for trio, asyncio and sync code.

Under trio the call runs natively in the caller's run (no bridge); the backend keeps
one :class:`~minimallm._session.Session` (runtime + cache) per trio run. Under asyncio
and from plain threads the call crosses ``minimallm._bridge`` into the process's trio
thread, where the same kind of session serves it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import NoReturn, Self, TypeVar

import trio

from minimallm import _bridge
from minimallm._batch import (
    ItemResult,
    Progress,
    make_emitter,
    response_item,
    run_batch,
    run_batched_callable,
)
from minimallm._config import MinimaLlmConfig
from minimallm._context import get_force_refresh, set_last_cached
from minimallm._errors import UsageError
from minimallm._runtime import RuntimeOptions
from minimallm._session import Session
from minimallm._types import MinimaLlmRequest, MinimaLlmResponse, MinimaLlmResult

__all__ = ["OpenAIMinimaLlm"]

T = TypeVar("T")
R = TypeVar("R")


class OpenAIMinimaLlm:
    """A backend for an OpenAI-compatible ``/v1/chat/completions`` endpoint.

    ``generate`` returns a :class:`MinimaLlmResponse` or a :class:`MinimaLlmFailure`
    (never raises for a failed request). Close it with ``aclose()`` (or use it as an
    async context manager) to release connections; it can be used again afterwards.
    """

    def __init__(self, cfg: MinimaLlmConfig, *, options: RuntimeOptions | None = None) -> None:
        if not isinstance(cfg, MinimaLlmConfig):
            raise TypeError(f"OpenAIMinimaLlm needs a MinimaLlmConfig, got {type(cfg).__name__}")
        self.cfg = cfg
        self._options = options or RuntimeOptions()
        self._sessions: dict[trio.lowlevel.TrioToken, Session] = {}

    @classmethod
    def from_env(cls) -> Self:
        """Build the backend from the environment variables (see ``MinimaLlmConfig``)."""
        return cls(MinimaLlmConfig.from_env())

    def __repr__(self) -> str:
        return (
            f"OpenAIMinimaLlm(model={self.cfg.model!r}, base_url={self.cfg.base_url!r}, "
            f"sessions={len(self._sessions)})"
        )

    def __reduce__(self) -> NoReturn:
        raise TypeError(
            "OpenAIMinimaLlm holds live connections and cannot be pickled; pickle its "
            "`.cfg` (which carries no API key) and build a new backend from it"
        )

    # -- the request path -----------------------------------------------------------

    async def generate(
        self, req: MinimaLlmRequest, *, force_refresh: bool = False
    ) -> MinimaLlmResult:
        """Answer one request. ``force_refresh`` (or the ``set_force_refresh`` context
        variable) skips the cache read; the answer still overwrites the cache entry."""
        force = force_refresh or get_force_refresh()
        if _bridge.trio_token_here() is not None:
            result = await self._generate_here(req, force)
        else:
            result = await _bridge.await_in_trio(functools.partial(self._generate_here, req, force))
        if isinstance(result, MinimaLlmResponse):
            set_last_cached(result.cached)
        return result

    def generate_sync(
        self, req: MinimaLlmRequest, *, force_refresh: bool = False
    ) -> MinimaLlmResult:
        """``generate`` for synchronous code (not on a thread with a running event loop)."""
        self._refuse_sync_in_trio("generate_sync")
        force = force_refresh or get_force_refresh()
        result = _bridge.call_blocking(functools.partial(self._generate_here, req, force))
        if isinstance(result, MinimaLlmResponse):
            set_last_cached(result.cached)
        return result

    async def _generate_here(self, req: MinimaLlmRequest, force_refresh: bool) -> MinimaLlmResult:
        session = await self._session_here()
        return (await session.generate_traced(req, force_refresh=force_refresh))[0]

    # -- batches --------------------------------------------------------------------

    async def run_batched(
        self, requests: Sequence[MinimaLlmRequest], *, progress: Progress = None
    ) -> list[MinimaLlmResult]:
        """Answer every request with the batch machinery (``cfg.batch``): exactly one
        result per request, index-aligned. Raises :class:`BatchAbortedError` (a
        RuntimeError carrying the partial results) after more than ``max_failures``."""
        reqs = list(requests)
        force = get_force_refresh()
        emit = make_emitter(progress)
        if _bridge.trio_token_here() is not None:
            results = await self._run_batched_here(reqs, force, emit)
        else:
            results = await _bridge.await_in_trio(
                functools.partial(self._run_batched_here, reqs, force, emit)
            )
        return results

    def run_batched_sync(
        self, requests: Sequence[MinimaLlmRequest], *, progress: Progress = None
    ) -> list[MinimaLlmResult]:
        """``run_batched`` for synchronous code; Ctrl-C cancels the batch."""
        self._refuse_sync_in_trio("run_batched_sync")
        emit = make_emitter(progress)
        return _bridge.call_blocking(
            functools.partial(self._run_batched_here, list(requests), get_force_refresh(), emit)
        )

    async def run_batched_callable(
        self,
        items: Sequence[T],
        fn: Callable[[T], Awaitable[R]],
        *,
        progress: Progress = None,
    ) -> list[R | None]:
        """``minimallm.run_batched_callable(items, fn, self.cfg.batch)``."""
        return await run_batched_callable(items, fn, self.cfg.batch, progress=progress)

    async def _run_batched_here(
        self, reqs: list[MinimaLlmRequest], force: bool, emit: Callable[[str], None]
    ) -> list[MinimaLlmResult]:
        session = await self._session_here()
        use_cache = session.cache is not None and not force

        missed_keys: dict[int, str] = {}  # filled by lookup, emptied by one: bounded by a chunk

        async def one(i: int, req: MinimaLlmRequest) -> ItemResult[MinimaLlmResult]:
            result, attempts = await session.generate_traced(
                req, force_refresh=force, missed_key=missed_keys.pop(i, None)
            )
            return response_item(result, attempts)

        async def lookup(indices: list[int]) -> dict[int, ItemResult[MinimaLlmResult]]:
            found = await session.lookup_many([reqs[i] for i in indices])
            hits: dict[int, ItemResult[MinimaLlmResult]] = {}
            for i, (key, hit) in zip(indices, found, strict=True):
                if hit is None:
                    missed_keys[i] = key
                else:
                    hits[i] = ItemResult(hit, "cached")
            return hits

        try:
            results = await run_batch(
                reqs,
                one,
                self.cfg.batch,
                emit=emit,
                runtime_view=_stall_view(session),
                lookup=lookup if use_cache else None,
            )
        finally:
            await session.flush()  # shielded: even an aborted or cancelled batch loses nothing
        return results  # type: ignore[return-value]  # every slot is filled unless aborted

    # -- lifecycle ------------------------------------------------------------------

    async def _session_here(self) -> Session:
        """The session of the current trio run, started on first use."""
        token = trio.lowlevel.current_trio_token()
        session = self._sessions.get(token)
        if session is not None and session.running:
            return session  # the common case: no checkpoint, no task switch
        if session is None or session.closed:
            session = Session(self.cfg, self._options)
            self._sessions[token] = session
            trio.lowlevel.spawn_system_task(
                self._host,
                token,
                session,
                name=f"minimallm-session-{self.cfg.model}",
                context=contextvars.Context(),
            )
        await session.wait_ready()
        return session

    async def _host(self, token: trio.lowlevel.TrioToken, session: Session) -> None:
        try:
            await session.host(self.cfg)
        finally:
            if self._sessions.get(token) is session:
                del self._sessions[token]

    async def aclose(self) -> None:
        """Close connections and stop the actors serving this caller's runtime."""
        token = _bridge.trio_token_here()
        if token is not None:
            await self._close_session(token)
            return
        thread = _bridge.current_thread_if_running()
        if thread is not None and thread.token in self._sessions:
            await _bridge.await_in_trio(functools.partial(self._close_session, thread.token))

    def close_sync(self) -> None:
        """``aclose`` for synchronous code."""
        self._refuse_sync_in_trio("close_sync")
        thread = _bridge.current_thread_if_running()
        if thread is not None and thread.token in self._sessions:
            _bridge.call_blocking(functools.partial(self._close_session, thread.token))

    async def _close_session(self, token: trio.lowlevel.TrioToken) -> None:
        session = self._sessions.pop(token, None)
        if session is not None:
            await session.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    @staticmethod
    def _refuse_sync_in_trio(name: str) -> None:
        if _bridge.trio_token_here() is not None:
            raise UsageError(
                f"{name}() was called inside a trio run; use the async method with await"
            )


def _stall_view(session: Session) -> Callable[[], tuple[int | None, int | None, float, int]]:
    def view() -> tuple[int | None, int | None, float, int]:
        s = session.runtime.statistics()
        return s.in_flight, s.limiter.limit, s.cooldown.deadline, s.cooldown.overloads

    return view
