"""The prompt cache's part of the request path: recent answers, bulk reads, single
flight, writes handed to the CacheWriter.

A :class:`CacheStage` is plain state plus small operations that the one request door
(:func:`minimallm._runtime.request.request`) uses in order: :meth:`CacheStage.recent`
(this process's own answers, before they commit), the flight table (identical requests
in flight share one HTTP call), :meth:`CacheStage.lookup` (a disk read in a worker
thread), :meth:`CacheStage.remember` and :meth:`CacheStage.store` (to the CacheWriter
actor). It is not an actor: nothing here runs on its own. Batches read in bulk
(:meth:`CacheStage.lookup_many`: one thread hop per chunk, not per request). The stage
and its writer are created by :func:`open_stage`, which
:func:`minimallm._runtime.serve.serve` calls (and imports) only when CACHE_DIR is set.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from collections.abc import Sequence

import trio

from minimallm._cache.flight import Flight
from minimallm._cache.lookup import CacheSources, LookupCache, request_model
from minimallm._cache.store import (
    CachedAnswer,
    CacheUnavailableError,
    PromptCache,
    cache_key,
    canonical_request_json,
)
from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import BackendClosedError, CacheWarning
from minimallm._lazy_json import LazyJson
from minimallm._outcome.redact import redact
from minimallm._types import (
    MinimaLlmRequest,
    MinimaLlmResponse,
    raw_json_text,
)
from minimallm.actors.cache_writer import CacheRow, CacheWriter, Flush

__all__ = [
    "NO_KEY",
    "CacheStage",
    "Flight",
    "cached_response",
    "open_stage",
    "safe_key",
    "warn_cache",
]

RECENT_ANSWERS = 4096
"""Answers kept in memory so a process reads its own writes before they commit."""

WRITE_BUFFER = 1024
"""Answers buffered for the CacheWriter (bounded: a slow disk slows the senders)."""


def warn_cache(message: str) -> None:
    """Cache trouble never stops a batch: it is a warning (category CacheWarning)."""
    warnings.warn(message, CacheWarning, stacklevel=2)


class CacheStage:
    """The cache's state in one runtime: the store, the writer's inbox, recent answers
    and the flights in progress."""

    __slots__ = (
        "_cache", "_model", "_recent", "_secrets", "_sources", "_writes", "flights", "force_all"
    )  # fmt: skip

    def __init__(
        self,
        model: str,
        cache: PromptCache,
        writes: trio.MemorySendChannel[CacheRow | Flush],
        sources: CacheSources | None = None,
        *,
        force_refresh: bool = False,
        secrets: tuple[str, ...] = (),
    ) -> None:
        self._model = model
        self._secrets = secrets  # the API key (and proxy credentials): never stored
        self._cache = cache
        self._writes = writes
        # The cache with its lookup dirs and model synonyms (CACHE_LOOKUP_DIRS,
        # MODEL_SYNONYMS); CACHE_FORCE_REFRESH: no reads at all, writes as usual.
        self._sources = sources or CacheSources(cache, model)
        self.force_all = force_refresh
        """CACHE_FORCE_REFRESH: every request skips every read (writes as usual)."""
        self.flights: dict[str, Flight] = {}
        """Key -> the HTTP call in progress for it (the request door adds and removes)."""
        # Answers of this process, newest last: a read sees its own writes at once,
        # before the writer's next commit (bounded, oldest dropped first).
        self._recent: OrderedDict[str, MinimaLlmResponse] = OrderedDict()

    def __repr__(self) -> str:
        return f"<CacheStage {self._cache!r} in_flight={len(self.flights)}>"

    def key(self, req: MinimaLlmRequest) -> str:
        """The cache key of ``req`` (model, messages, temperature, max_tokens, extra), or
        :data:`NO_KEY` for a request that cannot be encoded."""
        return safe_key(self._model, req)

    # -- reads ------------------------------------------------------------------------

    async def lookup_many(
        self, reqs: Sequence[MinimaLlmRequest]
    ) -> list[tuple[str, MinimaLlmResponse | None]]:
        """``(key, hit or None)`` per request, keys computed and read in one thread hop;
        a miss's key goes back in as ``request(missed_key=...)``. With
        CACHE_FORCE_REFRESH nothing is read: every request misses."""
        if self.force_all:
            return [(self.key(r), None) for r in reqs]
        return await trio.to_thread.run_sync(self._lookup_blocking, reqs, None)

    def _lookup_blocking(
        self, reqs: Sequence[MinimaLlmRequest], keys: Sequence[str] | None
    ) -> list[tuple[str, MinimaLlmResponse | None]]:
        if keys is None:
            keys = [safe_key(self._model, r) for r in reqs]
        try:
            found = self._sources.find(reqs, keys)
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

    def recent(self, key: str) -> MinimaLlmResponse | None:
        """This process's own answer for ``key`` if it is among the recent ones."""
        return self._recent.get(key)

    async def lookup(self, req: MinimaLlmRequest, key: str) -> MinimaLlmResponse | None:
        """One disk read (in a worker thread): the hit for ``req`` under ``key``."""
        [(_, hit)] = await trio.to_thread.run_sync(self._lookup_blocking, [req], [key])
        return hit

    # -- writes -----------------------------------------------------------------------

    def remember(self, key: str, response: MinimaLlmResponse) -> None:
        """Keep ``response`` as the recent answer for ``key`` (read before it commits)."""
        self._recent[key] = response
        self._recent.move_to_end(key)
        if len(self._recent) > RECENT_ANSWERS:
            self._recent.popitem(last=False)

    async def store(self, key: str, response: MinimaLlmResponse, req: MinimaLlmRequest) -> None:
        """Hand ``response`` to the CacheWriter (waits, shielded, only if its buffer is
        full: a paid-for answer is never dropped for a cancelled caller), the API key
        redacted from its text and body (the caller's own value is left as the server
        sent it)."""
        if self._cache.read_only:  # warned once when opened: nothing to write
            return
        text, raw = response.text, raw_json_text(response)
        if self._secrets:  # a server may echo the key in an answer: never store it
            text = redact(text, self._secrets)
            raw = None if raw is None else redact(raw, self._secrets)
        row = CacheRow(key, text, raw)
        if self._cache.audit_columns:  # minima-llm 0.2.7's columns: its model and canonical
            model = request_model(self._model, req)
            row = CacheRow(key, row.text, row.raw_json, model, canonical_request_json(model, req))
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


def cached_response(req: MinimaLlmRequest, hit: CachedAnswer) -> MinimaLlmResponse:
    """The response for a cache hit; its ``raw`` body is decoded only if somebody reads
    it (decoding every hit would triple the cost of a fully cached rerun)."""
    raw = None if not hit.raw_json else LazyJson(hit.raw_json)
    return MinimaLlmResponse(req.request_id, hit.text, raw, True)


async def open_cache(cfg: MinimaLlmConfig) -> tuple[PromptCache, CacheSources] | None:
    """The prompt cache's store and its read sources (the store, the lookup dirs,
    the model synonyms), or None (with a warning) when the cache cannot be used:
    requests still go out, uncached. A store this process may not write is read
    only (one warning says so). A lookup dir that cannot be opened is skipped
    with a warning. Blocking opens run in worker threads."""
    if cfg.cache_dir is None:
        return None
    try:
        cache = await trio.to_thread.run_sync(PromptCache.open, cfg.cache_dir)
    except CacheUnavailableError as exc:
        warn_cache(f"minimallm: running WITHOUT the prompt cache: {exc}")
        return None
    if cache.read_only:
        warn_cache(
            f"minimallm: the prompt cache {str(cfg.cache_dir)!r} is read-only for this "
            "process: its answers are used, new answers will not be cached"
        )
    lookups: list[LookupCache] = []
    for directory in cfg.cache_lookup_dirs:
        try:
            lookups.append(await trio.to_thread.run_sync(LookupCache.open, directory))
        except CacheUnavailableError as exc:
            warn_cache(f"minimallm: lookup cache skipped: {exc}")
    sources = CacheSources(cache, cfg.model, lookups=lookups, synonyms=cfg.model_synonyms)
    cache.close_with(sources.close_lookups)
    return cache, sources


async def open_stage(
    cfg: MinimaLlmConfig, secrets: tuple[str, ...]
) -> tuple[CacheStage, CacheWriter] | None:
    """The cache stage for ``cfg`` and the CacheWriter that commits its writes (for
    :func:`minimallm._runtime.serve.serve` to start), or None when there is no cache
    or it cannot be used (see :func:`open_cache`). ``secrets`` are never stored."""
    opened = await open_cache(cfg)
    if opened is None:
        return None
    store, sources = opened
    writes_send, writes_recv = trio.open_memory_channel[CacheRow | Flush](WRITE_BUFFER)
    stage = CacheStage(
        cfg.model, store, writes_send, sources, force_refresh=cfg.force_refresh, secrets=secrets
    )
    return stage, CacheWriter(store, writes_recv, warn_cache)
