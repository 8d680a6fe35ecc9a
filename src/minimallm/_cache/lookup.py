"""Where a cached answer may come from besides the cache's own key: read-only lookup
caches (``CACHE_LOOKUP_DIRS``) and the entries of model synonyms (``MODEL_SYNONYMS``).

The rules are minima-llm 0.2.7's, so teams running either library share judged caches:

- A request's entries are looked for under its own key and, when its model is the
  configured one or a synonym, under the key the same request has with each other
  name of that family (:func:`~minimallm._cache.keys.model_family`).
- They are looked for in the cache itself and in each lookup cache; **the newest row
  wins** (``created_at``); on equal times the cache itself beats the lookup caches
  (in their order), and the request's own model name beats its synonyms.
- A hit found anywhere but in the cache itself under the request's own key is
  **copied** there, under that key, with the row's own ``created_at`` (so it stays
  that generation for "newest wins") and minima-llm's ``model``/``canonical`` columns
  where the table has them: later runs find it without the lookup dirs or synonyms.
- A lookup cache is opened read-only: it is never written, migrated or locked.

Without lookup dirs and synonyms, :meth:`CacheSources.find` is exactly the cache's
own bulk read (no ``created_at``, no extra key). Everything here blocks: the request
path calls it from worker threads.
"""

from __future__ import annotations

import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from minimallm._cache.keys import cache_key, canonical_request_json, model_family
from minimallm._cache.sqlite import StoredRow, connect_read_only, is_environmental, select_rows
from minimallm._cache.store import DB_FILENAME, CachedAnswer, PromptCache, StoreRow
from minimallm._errors import CacheUnavailableError, CacheWarning, CacheWriteError
from minimallm._types import MinimaLlmRequest

__all__ = ["CacheSources", "LookupCache", "request_model"]


def request_model(configured: str, req: MinimaLlmRequest) -> str:
    """The model a request goes to: its own ``model`` when it names one, else the
    configured model (as minima-llm's ``req.model or cfg.model``)."""
    own = getattr(req, "model", None)
    return own if isinstance(own, str) and own else configured


class LookupCache:
    """Another directory's prompt cache, read only (``mode=ro``): never written,
    never migrated. Thread-safe (one connection behind a lock); blocking."""

    __slots__ = ("_closed", "_conn", "_lock", "_path", "_sleep", "directory")

    def __init__(
        self, directory: str, path: Path, conn: sqlite3.Connection, sleep: Callable[[float], None]
    ) -> None:
        """Private: use :meth:`open`."""
        self.directory = directory
        self._path = path
        self._conn = conn
        self._sleep = sleep
        self._lock = threading.Lock()
        self._closed = False

    @classmethod
    def open(
        cls,
        directory: str,
        *,
        busy_timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> LookupCache:
        """Open ``<directory>/minima_llm.db`` read-only. Raises
        :class:`CacheUnavailableError` naming the file when it is missing or unusable."""
        path = Path(directory) / DB_FILENAME
        if not path.is_file():
            raise CacheUnavailableError(
                f"lookup cache not found: {str(path)!r} (CACHE_LOOKUP_DIRS names "
                f"{directory!r}; it must hold a minimallm or minima-llm cache)"
            )
        try:
            conn = connect_read_only(path, busy_timeout_s)
        except sqlite3.Error as exc:
            if not is_environmental(exc):
                raise
            raise CacheUnavailableError(
                f"cannot open the lookup cache {str(path)!r}: {exc}"
            ) from exc
        return cls(directory, path, conn, sleep)

    def get_rows(self, keys: Sequence[str]) -> dict[str, StoredRow]:
        """The rows among ``keys`` with their times; raises CacheUnavailableError."""
        with self._lock:
            if self._closed:
                raise CacheUnavailableError(f"the lookup cache {str(self._path)!r} is closed")
            try:
                return select_rows(self._conn, keys, self._sleep)
            except sqlite3.Error as exc:
                if not is_environmental(exc):
                    raise
                raise CacheUnavailableError(
                    f"cannot read the lookup cache {str(self._path)!r}: {exc}"
                ) from exc

    def close(self) -> None:
        """Close the connection; idempotent."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __repr__(self) -> str:
        return f"<LookupCache {str(self._path)!r}{' closed' if self._closed else ''}>"


class CacheSources:
    """The cache and what it reads besides (see the module docstring)."""

    __slots__ = ("_lookups", "_model", "_primary", "_synonyms", "_warned")

    def __init__(
        self,
        primary: PromptCache,
        model: str,
        *,
        lookups: Sequence[LookupCache] = (),
        synonyms: Sequence[str] = (),
    ) -> None:
        self._primary = primary
        self._model = model
        self._lookups = tuple(lookups)
        self._synonyms = tuple(s for s in synonyms if s != model)
        self._warned: set[str] = set()

    def __repr__(self) -> str:
        return (
            f"<CacheSources {self._primary!r} lookups={len(self._lookups)} "
            f"synonyms={list(self._synonyms)}>"
        )

    @property
    def primary(self) -> PromptCache:
        """The cache that is written (``CACHE_DIR``)."""
        return self._primary

    def close_lookups(self) -> None:
        """Close the lookup caches (the primary is closed by its writer)."""
        for lookup in self._lookups:
            lookup.close()

    def find(
        self, reqs: Sequence[MinimaLlmRequest], keys: Sequence[str]
    ) -> dict[str, CachedAnswer]:
        """The newest answer per request, by its own key (misses absent; an empty key
        is skipped). Hits from elsewhere are copied into the cache before returning
        and carry their ``source``. Raises CacheUnavailableError when the cache
        itself cannot be read; an unreadable lookup cache is skipped with a warning.
        """
        if not self._lookups and not self._synonyms:
            return self._primary.get_many([k for k in keys if k])
        plans: list[tuple[MinimaLlmRequest, str, str, list[str], list[str]]] = []
        wanted: list[str] = []
        for req, key in zip(reqs, keys, strict=True):
            if not key:
                continue
            model = request_model(self._model, req)
            names = model_family(model, self._model, self._synonyms)
            candidates = [key, *(cache_key(name, req) for name in names[1:])]
            plans.append((req, key, model, names, candidates))
            wanted.extend(candidates)
        sources: list[tuple[str | None, dict[str, StoredRow]]] = [
            (None, self._primary.get_rows(wanted))
        ]
        for lookup in self._lookups:
            try:
                sources.append((f"lookup:{lookup.directory}", lookup.get_rows(wanted)))
            except CacheUnavailableError as exc:
                self._warn_once(lookup.directory, f"minimallm: lookup cache skipped: {exc}")
        found: dict[str, CachedAnswer] = {}
        copies: list[StoreRow] = []
        for req, key, model, names, candidates in plans:
            best: tuple[StoredRow, str | None] | None = None
            for where, rows in sources:
                for name, candidate in zip(names, candidates, strict=True):
                    row = rows.get(candidate)
                    if row is not None and (best is None or row.created_at > best[0].created_at):
                        best = (row, _source(where, None if candidate == key else name))
            if best is None:
                continue
            row, source = best
            found[key] = CachedAnswer(row.text, row.raw_json, source)
            if source is not None:
                canonical = canonical_request_json(model, req)
                copies.append(
                    StoreRow(key, row.text, row.raw_json, model, canonical, row.created_at)
                )
        if copies and not self._primary.read_only:
            try:
                self._primary.put_many(copies)
            except CacheWriteError as exc:
                self._warn_once("", f"minimallm: lookup hits are not copied into the cache: {exc}")
        return found

    def _warn_once(self, what: str, message: str) -> None:
        if what not in self._warned:
            self._warned.add(what)
            warnings.warn(message, CacheWarning, stacklevel=3)


def _source(where: str | None, synonym: str | None) -> str | None:
    """minima-llm's names: ``lookup:<dir>``, ``synonym:<name>``, ``lookup:<dir>:synonym:<name>``."""
    if synonym is None:
        return where
    return f"synonym:{synonym}" if where is None else f"{where}:synonym:{synonym}"
