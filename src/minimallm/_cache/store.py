"""The prompt cache's SQLite store: file layout, keys, bulk reads, batched writes.

The layout is the original implementation's, so caches it wrote keep working::

    <cache_dir>/minima_llm.db
    cache(key TEXT PRIMARY KEY, response_text TEXT NOT NULL,
          response_raw TEXT, created_at REAL, model TEXT, canonical TEXT)

``key`` is :func:`cache_key`; ``response_raw`` is the server's JSON body as text (or
NULL); ``created_at`` is wall-clock seconds since the epoch. ``model`` and
``canonical`` (the model name and the JSON text hashed into the key) are minima-llm
0.2.7's columns: a new table has them and every row written there fills them; a table
made before without them is left as it is, and its rows simply lack them.

Every method here blocks. The runtime calls them from worker threads
(``trio.to_thread``), never on the trio thread.

Concurrency. The database runs in WAL mode: readers never wait for the writer and
the writer never waits for readers; one writer at a time across every process
sharing the directory. A writer that finds the database locked waits in SQLite's
busy handler (``busy_timeout_s``, 30 s by default) and then in our own retry loop
with bounded backoff, so "database is locked" never reaches the user as such: after
the whole budget it becomes a :class:`CacheWriteError` / :class:`CacheUnavailableError`
that names the file.

Errors it raises (defined in :mod:`minimallm._errors`, re-exported here; the runtime
decides whether they warn or stop): :class:`CacheUnavailableError` (the cache cannot
be opened or read) and :class:`CacheWriteError` (a batch could not be written).

    MinimaLlmError
    ├── CacheUnavailableError   the cache cannot be opened or read
    └── CacheWriteError         a batch of answers could not be written
        └── CacheLockedError    ... within a short lock wait the caller chose

A cache this process may not write (another user's directory, a read-only mount) is
opened read-only (:attr:`PromptCache.read_only`): read as usual, never written.

The keys (:func:`cache_key`, :func:`canonical_request_json`) come from
:mod:`minimallm._cache.keys` and the SQL, schema check and lock waits from
:mod:`minimallm._cache.sqlite`; the keys and errors are re-exported here, so callers
import the whole store from this module.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from types import TracebackType

from minimallm._cache.keys import cache_key, canonical_request_json
from minimallm._cache.rows import CachedAnswer, StoreRow, row_params
from minimallm._cache.sqlite import (
    LOCK_RETRIES,
    READ_CHUNK,
    Params,
    StoredRow,
    is_busy,
    is_environmental,
    open_connections,
    scrub_surrogates,
    select_chunk,
    select_rows,
    with_lock_retry,
    write_batch,
)
from minimallm._errors import (
    CacheLockedError,
    CacheUnavailableError,
    CacheWriteError,
    MinimaLlmError,
)

__all__ = [
    "DB_FILENAME",
    "CacheLockedError",
    "CacheUnavailableError",
    "CacheWriteError",
    "CachedAnswer",
    "PromptCache",
    "StoreRow",
    "StoredRow",
    "cache_key",
    "canonical_request_json",
]

DB_FILENAME = "minima_llm.db"
"""The database's file name inside ``cache_dir`` (the original implementation's)."""


class PromptCache:
    """Bulk reads and batched writes of the prompt cache; thread-safe; blocking.

    Make one with :meth:`open`. It holds two connections, each behind its own lock:
    a reader (``query_only``) for :meth:`get_many` and a writer for
    :meth:`put_many`, so a reader thread and a writer thread never wait for each
    other (measured against one connection per thread: as fast for one reader,
    faster for two concurrent readers, since the GIL serialises them anyway).
    Usable as a context manager; :meth:`close` is idempotent. Not usable across
    ``fork()``: a child process opens its own.

    Durability: ``synchronous=NORMAL`` in WAL mode. A committed batch survives the
    process being killed (SIGKILL, crash); after an OS crash or power loss the last
    batches committed since the latest checkpoint may roll back, but the file is
    never corrupted.
    """

    __slots__ = (
        "_audit",
        "_busy_timeout_s",
        "_closed",
        "_companions",
        "_db_path",
        "_journal_mode",
        "_pid",
        "_read_lock",
        "_reader",
        "_sleep",
        "_wall_clock",
        "_write_lock",
        "_writer",
    )

    def __init__(
        self,
        db_path: Path,
        reader: sqlite3.Connection,
        writer: sqlite3.Connection | None,
        *,
        journal_mode: str,
        busy_timeout_s: float,
        wall_clock: Callable[[], float],
        sleep: Callable[[float], None],
        audit: bool = False,
    ) -> None:
        """Private: use :meth:`open`."""
        self._db_path = db_path
        self._audit = audit
        self._reader = reader
        self._writer = writer
        self._journal_mode = journal_mode
        self._busy_timeout_s = busy_timeout_s
        self._wall_clock = wall_clock
        self._sleep = sleep
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = False
        self._pid = os.getpid()
        self._companions: list[Callable[[], None]] = []

    @classmethod
    def open(
        cls,
        cache_dir: str | os.PathLike[str],
        *,
        wall_clock: Callable[[], float] = time.time,
        busy_timeout_s: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> PromptCache:
        """Open (creating if needed) ``<cache_dir>/minima_llm.db`` in WAL mode.

        ``wall_clock`` stamps ``created_at`` (seconds since the epoch);
        ``busy_timeout_s`` (seconds) is how long SQLite itself waits for a lock held
        by another connection before our retry loop (``sleep``, seconds) backs off
        and tries again. An existing file is only ever read here, never rewritten.

        Raises :class:`CacheUnavailableError` naming the path and the cause.
        """
        directory = Path(cache_dir)
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            cause = "it is a file" if directory.is_file() else str(exc)
            raise CacheUnavailableError(
                f"cannot use {str(directory)!r} as the prompt-cache directory: {cause}"
            ) from exc
        db_path = directory / DB_FILENAME
        if db_path.exists() and not db_path.is_file():
            raise CacheUnavailableError(
                f"cannot open the prompt cache {str(db_path)!r}: it exists and is not a file"
            )
        reader, writer, journal_mode, audit = open_connections(db_path, busy_timeout_s, sleep)
        return cls(
            db_path,
            reader,
            writer,
            journal_mode=journal_mode,
            busy_timeout_s=busy_timeout_s,
            wall_clock=wall_clock,
            sleep=sleep,
            audit=audit,
        )

    @property
    def read_only(self) -> bool:
        """True when this process may not write the file or its directory (another
        user's cache, a read-only mount): it is opened as a lookup cache is
        (``mode=ro``, or ``immutable`` when no ``-wal`` file can be made), its answers
        are read, and :meth:`put_many` raises :class:`CacheWriteError`."""
        return self._writer is None

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db_path

    @property
    def audit_columns(self) -> bool:
        """True when the table has minima-llm 0.2.7's ``model`` and ``canonical``
        columns (then :meth:`put_many` fills them from :class:`StoreRow` values)."""
        return self._audit

    def get_many(self, keys: Sequence[str]) -> dict[str, CachedAnswer]:
        """The cached answers among ``keys`` (misses are simply absent).

        One SELECT per 500 distinct keys. Raises :class:`CacheUnavailableError` when
        the file cannot be read (corruption, I/O error, a lock beyond the budget).
        """
        found: dict[str, CachedAnswer] = {}
        if not keys:
            return found
        unique = list(dict.fromkeys(keys))
        with self._read_lock:
            conn = self._usable(self._reader, CacheUnavailableError)
            try:
                for start in range(0, len(unique), READ_CHUNK):
                    chunk = unique[start : start + READ_CHUNK]
                    rows = with_lock_retry(partial(select_chunk, conn, chunk), self._sleep)
                    for key, text, raw in rows:
                        found[key] = CachedAnswer(text, raw)
            except sqlite3.Error as exc:
                if not is_environmental(exc):
                    raise
                raise CacheUnavailableError(
                    f"cannot read the prompt cache {str(self._db_path)!r}: "
                    f"{exc}{self._lock_note(exc)}"
                ) from exc
        return found

    def get_rows(self, keys: Sequence[str]) -> dict[str, StoredRow]:
        """Like :meth:`get_many`, with each row's ``created_at`` (for "the newest row
        wins" across lookup caches and model synonyms)."""
        with self._read_lock:
            conn = self._usable(self._reader, CacheUnavailableError)
            try:
                return select_rows(conn, keys, self._sleep)
            except sqlite3.Error as exc:
                if not is_environmental(exc):
                    raise
                raise CacheUnavailableError(
                    f"cannot read the prompt cache {str(self._db_path)!r}: "
                    f"{exc}{self._lock_note(exc)}"
                ) from exc

    def put_many(
        self,
        rows: Sequence[tuple[str, str, str | None] | StoreRow],
        *,
        lock_wait_s: float | None = None,
    ) -> None:
        """Write ``(key, text, raw_json)`` rows (or :class:`StoreRow` values) in one
        transaction; later rows win.

        ``INSERT OR REPLACE``, so a forced refresh overwrites the old answer. Lone
        surrogates, which UTF-8 cannot hold, are stored as U+FFFD.
        ``created_at`` is one ``wall_clock()`` reading for the whole batch (seconds
        since the epoch) unless a StoreRow brings its own. A table with minima-llm's
        ``model``/``canonical`` columns gets them from StoreRow values (NULL from plain
        tuples). All or nothing: on failure the batch is rolled back and
        :class:`CacheWriteError` is raised; rows written earlier stay intact.

        ``lock_wait_s`` (seconds): wait at most this long for a write lock held
        elsewhere, in one attempt, then raise :class:`CacheLockedError` (nothing
        written). None: the whole budget (busy timeout and retries) described above.
        """
        if not rows:
            return
        writer = self._writer
        if writer is None:
            raise CacheWriteError(
                f"could not write {len(rows)} answers to the prompt cache "
                f"{str(self._db_path)!r}: the file or its directory is readonly for this "
                "process; answers written before are intact"
            )
        now = self._wall_clock()
        params: list[Params] = [row_params(row, now, self._audit) for row in rows]
        with self._write_lock:
            conn = self._usable(writer, CacheWriteError)
            try:
                try:
                    self._write(conn, params, lock_wait_s)
                except UnicodeEncodeError:
                    # A lone surrogate (a server may send one as a JSON escape) cannot
                    # be stored as UTF-8: keep the batch, with U+FFFD in its place.
                    params = [scrub_surrogates(p) for p in params]
                    self._write(conn, params, lock_wait_s)
            except sqlite3.Error as exc:
                if not is_environmental(exc):
                    raise
                if lock_wait_s is not None and is_busy(exc):
                    raise CacheLockedError(
                        f"the prompt cache {str(self._db_path)!r} is locked: another "
                        f"process holds its write lock (waited {lock_wait_s:g} s)"
                    ) from exc
                raise CacheWriteError(
                    f"could not write {len(params)} answers to the prompt cache "
                    f"{str(self._db_path)!r}: {exc}{self._lock_note(exc)}; "
                    "answers written before are intact"
                ) from exc

    def _write(
        self,
        conn: sqlite3.Connection,
        params: list[Params],
        lock_wait_s: float | None,
    ) -> None:
        if lock_wait_s is None:
            with_lock_retry(lambda: write_batch(conn, params), self._sleep)
            return
        conn.execute(f"PRAGMA busy_timeout = {max(0, round(lock_wait_s * 1000))}")
        try:
            write_batch(conn, params)
        finally:
            conn.execute(f"PRAGMA busy_timeout = {round(self._busy_timeout_s * 1000)}")

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    def close_with(self, close: Callable[[], None]) -> None:
        """Call ``close`` when this cache closes (its read-only lookup caches)."""
        self._companions.append(close)

    def close(self) -> None:
        """Close both connections (the last one out checkpoints the WAL), and what was
        registered with :meth:`close_with`; idempotent."""
        with self._read_lock, self._write_lock:
            if self._closed:
                return
            self._closed = True
            for close in self._companions:
                close()
            if os.getpid() != self._pid:
                # SQLite forbids using (or closing) a connection inherited across
                # fork(); the parent still owns these. Drop nothing, touch nothing.
                return
            try:
                self._reader.close()
            finally:
                if self._writer is not None:
                    self._writer.close()

    def __enter__(self) -> PromptCache:
        """Return self; :meth:`close` on exit."""
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Close the cache."""
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"open, journal_mode={self._journal_mode}"
        return f"<PromptCache {str(self._db_path)!r} {state}>"

    def _usable(self, conn: sqlite3.Connection, error: type[MinimaLlmError]) -> sqlite3.Connection:
        if self._closed:
            raise error(f"the prompt cache {str(self._db_path)!r} is closed")
        if os.getpid() != self._pid:
            raise error(
                f"the prompt cache {str(self._db_path)!r} was opened in process "
                f"{self._pid}; open a new PromptCache in this process (SQLite "
                "connections must not cross fork())"
            )
        return conn

    def _lock_note(self, exc: sqlite3.Error) -> str:
        if not is_busy(exc):
            return ""
        return (
            f" (still locked by another connection after {LOCK_RETRIES + 1} attempts "
            f"of up to {self._busy_timeout_s:g} s each)"
        )
