"""OpenAIMinimaLlm: the documented backend, one object for trio, asyncio and sync code.

Under trio the call runs natively in the caller's run (no bridge); the backend keeps
one :class:`~minimallm._runtime.session.Session` (runtime + cache) per trio run. Under asyncio
and from plain threads the call crosses ``minimallm._bridge`` into the process's trio
thread, where the same kind of session serves it.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Awaitable, Callable, Iterable
from types import TracebackType
from typing import NoReturn, Self, TypeVar

import trio

from minimallm import _bridge
from minimallm._batch.callables import run_batched_callable
from minimallm._batch.collect import collect
from minimallm._batch.engine import Deliver
from minimallm._batch.requests import run_request_batch
from minimallm._batch.stream import (
    AsyncioBatchStream,
    EngineStarter,
    SyncBatchStream,
    TrioBatchStream,
)
from minimallm._config.settings import MinimaLlmConfig
from minimallm._context import refresh_number, set_last_cached
from minimallm._errors import UsageError
from minimallm._progress import Progress, make_sink
from minimallm._runtime.runtime import RuntimeOptions
from minimallm._runtime.session import Session
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
        self, req: MinimaLlmRequest, *, force_refresh: bool | int = False
    ) -> MinimaLlmResult:
        """Answer one request. ``force_refresh`` (or the ``set_force_refresh`` context
        variable) skips the cache read; the answer still overwrites the cache entry.
        A forced refresh is a re-ask (an int: its number, ``True``: 1): a request
        without a temperature goes out with a seed and a temperature rising with the
        number (``RETRY_TEMPERATURE_MAX``), neither in the cache key."""
        force = refresh_number(force_refresh)
        if _bridge.trio_token_here() is not None:
            result = await self._generate_here(req, force)
        else:
            result = await _bridge.await_in_trio(functools.partial(self._generate_here, req, force))
        if isinstance(result, MinimaLlmResponse):
            set_last_cached(result.cached)
        return result

    def generate_sync(
        self, req: MinimaLlmRequest, *, force_refresh: bool | int = False
    ) -> MinimaLlmResult:
        """``generate`` for synchronous code (not on a thread with a running event loop)."""
        self._refuse_sync_in_trio("generate_sync")
        force = refresh_number(force_refresh)
        result = _bridge.call_blocking(functools.partial(self._generate_here, req, force))
        if isinstance(result, MinimaLlmResponse):
            set_last_cached(result.cached)
        return result

    async def _generate_here(self, req: MinimaLlmRequest, force_refresh: int) -> MinimaLlmResult:
        session = await self._session_here()
        return (await session.generate_traced(req, force_refresh=force_refresh)).result

    # -- batches --------------------------------------------------------------------

    async def run_batched(
        self, requests: Iterable[MinimaLlmRequest], *, progress: Progress = None
    ) -> list[MinimaLlmResult]:
        """Answer every request with the batch machinery (``cfg.batch``): exactly one
        result per request, index-aligned. A request that cannot be sent is that item's
        failure (``error_type="InvalidRequest"``). Raises :class:`BatchAbortedError`
        after more than ``max_failures`` failures, or at once when the first failures
        are all alike; that exception, a :class:`BackendClosedError` (``aclose`` during
        the batch) and any other that stops it carry the results so far as
        ``.results``. Never an ExceptionGroup. ``progress``: see :class:`BatchProgress`."""
        reqs = list(requests)
        start = self._request_starter(reqs, progress, len(reqs))
        if _bridge.trio_token_here() is not None:
            return await collect(start, len(reqs))
        return await _bridge.await_in_trio(functools.partial(collect, start, len(reqs)))

    def run_batched_sync(
        self, requests: Iterable[MinimaLlmRequest], *, progress: Progress = None
    ) -> list[MinimaLlmResult]:
        """``run_batched`` for synchronous code; Ctrl-C cancels the batch."""
        self._refuse_sync_in_trio("run_batched_sync")
        reqs = list(requests)
        start = self._request_starter(reqs, progress, len(reqs))
        return _bridge.call_blocking(functools.partial(collect, start, len(reqs)))

    def stream_batched(
        self,
        requests: Iterable[MinimaLlmRequest],
        *,
        ordered: bool = False,
        progress: Progress = None,
        total: int | None = None,
    ) -> TrioBatchStream[MinimaLlmResult] | AsyncioBatchStream[MinimaLlmResult]:
        """Results as they come, from trio or asyncio::

            async with backend.stream_batched(requests, ordered=True) as results:
                async for index, result in results:
                    ...

        ``requests`` may be any iterable (a generator of a million requests is read
        lazily); ``ordered=True`` yields in input order, each as soon as it and all
        before it are ready (a bounded reorder buffer). ``total``: the number of
        requests, for progress, when ``requests`` has no length. Leaving the block
        early stops the batch. Errors as for :meth:`run_batched`, raised from the loop."""
        window = max(1024, 4 * self.cfg.batch.num_workers)
        total = total if total is not None else _length(requests)
        start = self._request_starter(requests, progress, total)
        if _bridge.trio_token_here() is not None:
            return TrioBatchStream(start, ordered=ordered, window=window)
        return AsyncioBatchStream(start, ordered=ordered, window=window)

    def stream_batched_sync(
        self,
        requests: Iterable[MinimaLlmRequest],
        *,
        ordered: bool = False,
        progress: Progress = None,
        total: int | None = None,
    ) -> SyncBatchStream[MinimaLlmResult]:
        """:meth:`stream_batched` for synchronous code: ``with ... as results: for
        index, result in results``."""
        self._refuse_sync_in_trio("stream_batched_sync")
        window = max(1024, 4 * self.cfg.batch.num_workers)
        total = total if total is not None else _length(requests)
        start = self._request_starter(requests, progress, total)
        return SyncBatchStream(start, ordered=ordered, window=window)

    async def run_batched_callable(
        self,
        items: Iterable[T],
        fn: Callable[[T], Awaitable[R]],
        *,
        progress: Progress = None,
    ) -> list[R | None]:
        """``minimallm.run_batched_callable(items, fn, self.cfg.batch)``."""
        return await run_batched_callable(items, fn, self.cfg.batch, progress=progress)

    def _request_starter(
        self, requests: Iterable[MinimaLlmRequest], progress: Progress, total: int | None
    ) -> EngineStarter:
        """The batch, ready to run in whichever trio run serves this caller; the
        caller's context (force_refresh) and progress choice are read now."""
        force = refresh_number()
        sink = make_sink(progress, self.cfg.batch.heartbeat_s)

        async def start(deliver: Deliver, window: trio.Semaphore | None) -> None:
            session = await self._session_here()
            await run_request_batch(
                session,
                requests,
                self.cfg.batch,
                force_refresh=force,
                deliver=deliver,
                sink=sink,
                total=total,
                window=window,
            )

        return start

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


def _length(items: Iterable[object]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
