"""The prompt cache in the request path: lookups, single-flight, writes.

One :class:`CacheLayer` per runtime (per trio run). ``generate`` asks it first: a hit
returns ``cached=True`` at once, without pacing or limits; a miss goes to the runtime,
and identical requests in flight at the same time share that one HTTP call. Successes
are handed to the :class:`~minimallm.actors.cache_writer.CacheWriter`. Reads run in a
worker thread; batches read in bulk (:meth:`lookup_many`: one thread hop per chunk,
not per request).
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import trio

from minimallm._cache.store import CachedAnswer, CacheUnavailableError, PromptCache, cache_key
from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import BackendClosedError, CacheWarning
from minimallm._lazy_json import LazyJson
from minimallm._runtime.runtime import Runtime, Traced
from minimallm._types import (
    MinimaLlmRequest,
    MinimaLlmResponse,
    MinimaLlmResult,
    raw_json_text,
    replace_response,
)
from minimallm.actors.cache_writer import CacheRow, CacheWriter, Flush

__all__ = ["NO_KEY", "CacheLayer", "safe_key", "warn_cache"]

RECENT_ANSWERS = 4096
"""Answers kept in memory so a process reads its own writes before they commit."""

WRITE_BUFFER = 1024
"""Answers buffered for the CacheWriter (bounded: a slow disk slows the senders)."""


def warn_cache(message: str) -> None:
    """Cache trouble never stops a batch: it is a warning (category CacheWarning)."""
    warnings.warn(message, CacheWarning, stacklevel=2)


class _Flight:
    """An HTTP call for one cache key that others may join."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: MinimaLlmResult | None = None


class CacheLayer:
    """Cache in front of one runtime."""

    __slots__ = ("_cache", "_flights", "_model", "_recent", "_writes")

    def __init__(
        self, model: str, cache: PromptCache, writes: trio.MemorySendChannel[CacheRow | Flush]
    ) -> None:
        self._model = model
        self._cache = cache
        self._writes = writes
        self._flights: dict[str, _Flight] = {}
        # Answers of this process, newest last: a read sees its own writes at once,
        # before the writer's next commit (bounded, oldest dropped first).
        self._recent: OrderedDict[str, MinimaLlmResponse] = OrderedDict()

    def __repr__(self) -> str:
        return f"<CacheLayer {self._cache!r} in_flight={len(self._flights)}>"

    @classmethod
    async def open(cls, cfg: MinimaLlmConfig, nursery: trio.Nursery) -> CacheLayer | None:
        """Open the cache and start its writer in ``nursery``; None (with a warning)
        when the cache cannot be used — requests still go out, uncached."""
        assert cfg.cache_dir is not None
        try:
            cache = await trio.to_thread.run_sync(PromptCache.open, cfg.cache_dir)
        except CacheUnavailableError as exc:
            warn_cache(f"minimallm: running WITHOUT the prompt cache: {exc}")
            return None
        send, recv = trio.open_memory_channel[CacheRow | Flush](WRITE_BUFFER)
        await nursery.start(CacheWriter(cache, recv, warn_cache).run)
        return cls(cfg.model, cache, send)

    def key(self, req: MinimaLlmRequest) -> str:
        """The cache key of ``req`` (model, messages, temperature, max_tokens, extra), or
        :data:`NO_KEY` for a request that cannot be encoded."""
        return safe_key(self._model, req)

    # -- reads ------------------------------------------------------------------------

    async def lookup_many(
        self, reqs: Sequence[MinimaLlmRequest]
    ) -> list[tuple[str, MinimaLlmResponse | None]]:
        """``(key, hit or None)`` per request, keys computed and read in one thread hop;
        a miss's key goes back in as ``generate_traced(missed_key=...)``."""
        return await trio.to_thread.run_sync(self._lookup_blocking, reqs, None)

    def _lookup_blocking(
        self, reqs: Sequence[MinimaLlmRequest], keys: Sequence[str] | None
    ) -> list[tuple[str, MinimaLlmResponse | None]]:
        if keys is None:
            keys = [safe_key(self._model, r) for r in reqs]
        try:
            found = self._cache.get_many([k for k in keys if k])
        except CacheUnavailableError as exc:
            if self._cache.closed:  # the backend closed it: no server to ask either
                raise BackendClosedError(
                    "the backend was closed while its batch read the prompt cache"
                ) from None
            warn_cache(f"minimallm: cache read failed, asking the server instead: {exc}")
            found = {}
        return [
            (k, None if (hit := found.get(k)) is None else cached_response(r, hit))
            for r, k in zip(reqs, keys, strict=True)
        ]

    # -- the request path -------------------------------------------------------------

    async def generate_traced(
        self,
        runtime: Runtime,
        req: MinimaLlmRequest,
        *,
        force_refresh: int,
        missed_key: str | None = None,
        events: trio.MemorySendChannel[Any] | None = None,
        index: int | None = None,
    ) -> Traced:
        """A hit at once (unless ``force_refresh``: 0, or the re-ask's number, which
        the runtime sends as a seed and temperature), else one shared HTTP call per
        key; a success is queued for writing under the request's own key.
        ``missed_key``: a bulk lookup already missed under this key (no second read,
        no second hash).

        Single flight covers the whole miss path, the disk read included: the first
        caller for a key registers its flight *before* its read's thread hop, so every
        identical call that arrives meanwhile joins it instead of reading (and missing)
        too and starting a second HTTP call. Every check and the registration happen
        without a checkpoint in between.
        """
        key = self.key(req) if missed_key is None else missed_key
        if not key:  # NO_KEY, cannot be encoded: the runtime makes it a failure, uncached
            return await runtime.generate_traced(
                req, events=events, index=index, reask=force_refresh
            )
        while True:
            if not force_refresh:
                recent = self._recent.get(key)
                if recent is not None:
                    return Traced(
                        replace_response(recent, request_id=req.request_id, cached=True), 0, None
                    )
            flight = self._flights.get(key)
            if flight is None:
                break
            await flight.done.wait()
            result = flight.result
            # None: the leader was cancelled; a cached answer is no answer for a caller
            # that asked for a fresh one. Either way, look again (and maybe lead).
            if result is not None and not (force_refresh and _is_cached(result)):
                return Traced(replace_response(result, request_id=req.request_id), 0, None)
        flight = self._flights[key] = _Flight()
        try:
            if not force_refresh and missed_key is None:
                [(_, hit)] = await trio.to_thread.run_sync(self._lookup_blocking, [req], [key])
                if hit is not None:
                    flight.result = hit
                    return Traced(hit, 0, None)
            traced = await runtime.generate_traced(
                req, events=events, index=index, reask=force_refresh
            )
            result = flight.result = traced.result
            if isinstance(result, MinimaLlmResponse):
                self._remember(key, result)  # before the joiners wake
        finally:
            del self._flights[key]
            flight.done.set()
        if isinstance(result, MinimaLlmResponse):
            await self._store(key, result)
        return traced

    # -- writes -----------------------------------------------------------------------

    def _remember(self, key: str, response: MinimaLlmResponse) -> None:
        self._recent[key] = response
        self._recent.move_to_end(key)
        if len(self._recent) > RECENT_ANSWERS:
            self._recent.popitem(last=False)

    async def _store(self, key: str, response: MinimaLlmResponse) -> None:
        row = CacheRow(key, response.text, raw_json_text(response))
        try:
            self._writes.send_nowait(row)
        except trio.WouldBlock:
            # A paid-for answer: wait for room even if the caller is being cancelled.
            with trio.CancelScope(shield=True):
                await self._writes.send(row)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            warn_cache("minimallm: the cache writer has stopped; an answer was not cached")

    async def flush(self) -> None:
        """Wait until every answer queued so far is committed (shielded: runs even
        while the caller is being cancelled, so a cancelled batch loses nothing)."""
        done = trio.Event()
        with trio.CancelScope(shield=True):
            try:
                await self._writes.send(Flush(done))
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                return
            await done.wait()


NO_KEY = ""
"""The key of a request that cannot be encoded (a value JSON cannot carry, a wrong
shape): it bypasses the cache, and the runtime turns it into that item's failure. An
empty string, so a key stays a ``str`` wherever it travels."""


def safe_key(model: str, req: MinimaLlmRequest) -> str:
    """:func:`cache_key`, or :data:`NO_KEY` when ``req`` cannot be encoded: one bad
    request must not sink the bulk lookup of its whole chunk."""
    try:
        return cache_key(model, req)
    except (TypeError, ValueError, AttributeError, RecursionError):
        return NO_KEY


def _is_cached(result: MinimaLlmResult) -> bool:
    return isinstance(result, MinimaLlmResponse) and result.cached


def cached_response(req: MinimaLlmRequest, hit: CachedAnswer) -> MinimaLlmResponse:
    """The response for a cache hit; its ``raw`` body is decoded only if somebody reads
    it (decoding every hit would triple the cost of a fully cached rerun)."""
    raw = None if not hit.raw_json else LazyJson(hit.raw_json)
    return MinimaLlmResponse(req.request_id, hit.text, raw, True)
