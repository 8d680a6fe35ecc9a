"""OpenAIMinimaLlm: the documented backend, one object for trio, asyncio and sync code.

Under trio the call runs natively in the caller's run (no bridge); the backend keeps
one runtime per trio run (:mod:`minimallm._runtime`: ``serve`` wires its actors,
``request`` is the one door, a :class:`~minimallm._runtime.host.Host` runs it in a
system task, or in the caller's nursery with :meth:`OpenAIMinimaLlm.serving`). Under
asyncio and from plain threads the call crosses ``minimallm._bridge`` into the
process's trio thread, where the same kind of runtime serves it.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from types import TracebackType
from typing import Any, NoReturn, Self, TypeVar

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
from minimallm._errors import BackendFailedError, UsageError
from minimallm._progress import Progress, make_sink
from minimallm._runtime.host import Host
from minimallm._runtime.request import request
from minimallm._runtime.serve import Runtime, RuntimeOptions
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

    def __init__(
        self,
        cfg: MinimaLlmConfig,
        *,
        transport: Callable[[str], Any] | None = None,
        options: RuntimeOptions | None = None,
    ) -> None:
        """``transport``: answer attempts without a server, for tests of your own code
        (:class:`minimallm.testing.MockTransport`)."""
        if not isinstance(cfg, MinimaLlmConfig):
            raise TypeError(f"OpenAIMinimaLlm needs a MinimaLlmConfig, got {type(cfg).__name__}")
        if transport is not None and not callable(transport):
            raise TypeError(
                "transport= takes a minimallm.testing.MockTransport (a factory of "
                f"connections), got {type(transport).__name__}"
            )
        self.cfg = cfg
        options = options or RuntimeOptions()
        if transport is not None:
            options = options._replace(transport_factory=transport)
        self._options = options
        self._hosts: dict[trio.lowlevel.TrioToken, Host] = {}

    @classmethod
    def from_env(cls) -> Self:
        """Build the backend from the environment variables (see ``MinimaLlmConfig``)."""
        return cls(MinimaLlmConfig.from_env())

    def __repr__(self) -> str:
        return (
            f"OpenAIMinimaLlm(model={self.cfg.model!r}, base_url={self.cfg.base_url!r}, "
            f"runtimes={len(self._hosts)})"
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
        runtime = await self._runtime_here()
        return (await request(runtime, req, force_refresh=force_refresh)).result

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
            runtime = await self._runtime_here()
            await run_request_batch(
                runtime,
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

    async def _runtime_here(self) -> Runtime:
        """The runtime of the current trio run, started on first use (in a system
        task; see :mod:`minimallm._runtime.host`). After an actor failed, every call
        raises that failure until the backend is closed."""
        token = trio.lowlevel.current_trio_token()
        host = self._hosts.get(token)
        if host is not None:
            runtime = host.runtime
            if runtime is not None and runtime.running:
                return runtime  # the common case: no checkpoint, no task switch
        if host is None or (host.ended and host.failure is None):
            host = self._hosts[token] = Host()
            trio.lowlevel.spawn_system_task(
                self._host,
                token,
                host,
                name=f"minimallm-runtime-{self.cfg.model}",
                context=contextvars.Context(),
            )
        return await host.wait_ready()

    async def _host(self, token: trio.lowlevel.TrioToken, host: Host) -> None:
        try:
            await host.run(self.cfg, self._options)
        finally:
            if self._hosts.get(token) is host and host.failure is None:
                del self._hosts[token]  # a failed one stays: later calls are told why

    @contextlib.asynccontextmanager
    async def serving(self) -> AsyncIterator[Self]:
        """Run this backend's actors in the caller's own nursery (trio only)::

            async with backend.serving():
                await backend.generate(req)

        Without it the actors run in a trio system task and a failing actor reaches
        only the calls waiting on it. Inside it, the failure also cancels the block
        and the ``async with`` raises the one :class:`BackendFailedError` naming the
        actor (never an ExceptionGroup). On leaving, the runtime stops and the cache
        writer commits every answer."""
        if _bridge.trio_token_here() is None:
            raise UsageError("serving() needs a trio run: under asyncio, just use the backend")
        token = trio.lowlevel.current_trio_token()
        current = self._hosts.get(token)
        if current is not None and not current.ended:
            raise UsageError(
                "this backend already runs in this trio run; serving() must come "
                "before its first call (or after aclose())"
            )
        host = self._hosts[token] = Host()
        failure: BackendFailedError | None = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(host.run, reraise=True), self.cfg, self._options
                )
                try:
                    await host.wait_ready()
                    yield self
                finally:
                    await host.aclose()
        except BaseExceptionGroup as group:
            failure = _failure_in(group)
            if failure is None:
                leaves = _leaves(group)
                if len(leaves) != 1:
                    raise
                raise leaves[0] from leaves[0].__cause__  # the block's own error, as itself
        finally:
            if self._hosts.get(token) is host:
                del self._hosts[token]
        if failure is not None:
            raise failure from failure.__cause__

    async def aclose(self) -> None:
        """Close connections and stop the actors serving this caller's runtime."""
        token = _bridge.trio_token_here()
        if token is not None:
            await self._close_here(token)
            return
        thread = _bridge.current_thread_if_running()
        if thread is not None and thread.token in self._hosts:
            await _bridge.await_in_trio(functools.partial(self._close_here, thread.token))

    def close_sync(self) -> None:
        """``aclose`` for synchronous code."""
        self._refuse_sync_in_trio("close_sync")
        thread = _bridge.current_thread_if_running()
        if thread is not None and thread.token in self._hosts:
            _bridge.call_blocking(functools.partial(self._close_here, thread.token))

    async def _close_here(self, token: trio.lowlevel.TrioToken) -> None:
        host = self._hosts.pop(token, None)
        if host is not None:
            await host.aclose()

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


def _failure_in(exc: BaseException) -> BackendFailedError | None:
    """The BackendFailedError inside ``exc`` (groups unwrapped), if any."""
    if isinstance(exc, BackendFailedError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _failure_in(inner)
            if found is not None:
                return found
    return None


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _length(items: Iterable[object]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None
