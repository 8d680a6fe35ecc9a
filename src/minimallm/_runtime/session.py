"""A backend's life inside one trio run: the runtime's actors plus the prompt cache.

The backend keeps one :class:`Session` per trio run (the caller's own run, or the
bridge thread's), hosted in a *system task* of that run, so a trio caller needs no
nursery of its own and everything ends with the run. :meth:`Session.host` is the
one place that starts the session's services, in one nursery, in order: the cache
(and its writer) first, then the runtime's actors; they stop in reverse, the writer's
final commit last.
"""

from __future__ import annotations

from typing import Any

import trio

from minimallm._cache.stage import CacheLayer
from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import BackendClosedError, BackendFailedError
from minimallm._runtime.runtime import Runtime, RuntimeOptions, Traced
from minimallm._types import MinimaLlmRequest, MinimaLlmResponse

__all__ = ["Session"]


class Session:
    """Runtime + cache of one backend in one trio run."""

    __slots__ = ("_done", "_ready", "cache", "failure", "runtime")

    def __init__(self, cfg: MinimaLlmConfig, options: RuntimeOptions) -> None:
        self.runtime = Runtime(cfg, options)
        self.cache: CacheLayer | None = None
        self.failure: BackendClosedError | None = None
        """Why the session ended early (an actor or the cache writer failed), if it did."""
        self._ready = trio.Event()
        self._done = trio.Event()

    def __repr__(self) -> str:
        return f"<Session {self.runtime!r} cache={self.cache!r}>"

    @property
    def running(self) -> bool:
        """Started and not stopping: calls may go straight in."""
        return self._ready.is_set() and not self.closed

    @property
    def closed(self) -> bool:
        """True once a stop was asked for or the session ended."""
        return self.runtime.closed or self._done.is_set()

    async def host(self, cfg: MinimaLlmConfig) -> None:
        """Run every service until :meth:`aclose` (or the end of the trio run).

        An actor's failure has already been answered to every waiting caller by the
        runtime; here it is kept for later callers (:meth:`wait_ready`) and never
        escapes (a system task that raised would crash the caller's whole trio run)."""
        try:
            async with trio.open_nursery() as services:
                if cfg.cache_dir is not None:
                    self.cache = await CacheLayer.open(cfg, services)
                services.start_soon(self._mark_ready)
                await self.runtime.serve()
                services.cancel_scope.cancel()
        except BaseException as exc:
            failure = _first_failure(exc)
            if failure is None:
                raise  # cancelled: the trio run is ending
            self.failure = (
                failure
                if isinstance(failure, BackendClosedError)
                else _failed(
                    f"minimallm's session failed: {type(failure).__name__}: {failure}", failure
                )
            )
        finally:
            self._ready.set()
            self._done.set()

    async def _mark_ready(self) -> None:
        await self.runtime.wait_ready()
        self._ready.set()

    async def wait_ready(self) -> None:
        """Wait until the services run; BackendClosedError if the session ended."""
        await self._ready.wait()
        if self._done.is_set():
            if self.failure is not None:
                raise _failed(str(self.failure), self.failure.__cause__)
            raise BackendClosedError("the minimallm runtime has stopped")

    async def aclose(self) -> None:
        """Stop the runtime, then wait for the cache writer's final commit."""
        self.runtime.stop()
        await self._done.wait()

    # -- the request path -------------------------------------------------------------

    async def generate_traced(
        self,
        req: MinimaLlmRequest,
        *,
        force_refresh: int,
        missed_key: str | None = None,
        events: trio.MemorySendChannel[Any] | None = None,
        index: int | None = None,
    ) -> Traced:
        """Through the cache when there is one. ``force_refresh``: 0, or the number of
        this re-ask (see ``Runtime.generate_traced``'s ``reask``)."""
        if self.cache is None:
            return await self.runtime.generate_traced(
                req, events=events, index=index, reask=force_refresh
            )
        return await self.cache.generate_traced(
            self.runtime,
            req,
            force_refresh=force_refresh,
            missed_key=missed_key,
            events=events,
            index=index,
        )

    async def flush(self) -> None:
        """Every answer so far is committed to the cache (no-op without one)."""
        if self.cache is not None:
            await self.cache.flush()

    async def lookup_many(
        self, reqs: list[MinimaLlmRequest]
    ) -> list[tuple[str, MinimaLlmResponse | None]]:
        """``(key, hit or None)`` per request, in bulk (only with a cache)."""
        assert self.cache is not None, "lookups need a cache"
        return await self.cache.lookup_many(reqs)


def _first_failure(exc: BaseException) -> BaseException | None:
    """The first exception in ``exc`` (groups unwrapped) that is not a cancellation."""
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            found = _first_failure(inner)
            if found is not None:
                return found
        return None
    return None if isinstance(exc, trio.Cancelled) else exc


def _failed(message: str, cause: BaseException | None) -> BackendFailedError:
    error = BackendFailedError(message)
    error.__cause__ = cause
    return error
