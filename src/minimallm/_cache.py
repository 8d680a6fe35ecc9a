"""The prompt cache's SQLite store: file layout, keys, bulk reads, batched writes.

The layout is the original implementation's, so caches it wrote keep working::

    <cache_dir>/minima_llm.db
    cache(key TEXT PRIMARY KEY, response_text TEXT NOT NULL,
          response_raw TEXT, created_at REAL)

``key`` is :func:`cache_key`; ``response_raw`` is the server's JSON body as text (or
NULL); ``created_at`` is wall-clock seconds since the epoch.

Every method here blocks. The runtime calls them from worker threads
(``trio.to_thread``), never on the trio thread.

Concurrency. The database runs in WAL mode: readers never wait for the writer and
the writer never waits for readers; one writer at a time across every process
sharing the directory. A writer that finds the database locked waits in SQLite's
busy handler (``busy_timeout_s``, 30 s by default) and then in our own retry loop
with bounded backoff, so "database is locked" never reaches the user as such: after
the whole budget it becomes a :class:`CacheWriteError` / :class:`CacheUnavailableError`
that names the file.

Errors defined here (the runtime decides whether they warn or stop)::

    MinimaLlmError
    ├── CacheUnavailableError   the cache cannot be opened or read
    └── CacheWriteError         a batch of answers could not be written
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from minimallm._errors import MinimaLlmError
from minimallm._types import MinimaLlmRequest

__all__ = [
    "DB_FILENAME",
    "CacheUnavailableError",
    "CacheWriteError",
    "CachedAnswer",
    "PromptCache",
    "cache_key",
    "canonical_request_json",
]

_T = TypeVar("_T")

DB_FILENAME = "minima_llm.db"
"""The database's file name inside ``cache_dir`` (the original implementation's)."""

_CREATE_SQL = (
    "CREATE TABLE IF NOT EXISTS cache ("
    "key TEXT PRIMARY KEY, response_text TEXT NOT NULL, "
    "response_raw TEXT, created_at REAL)"
)
# Exactly json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":")),
# built once: json.dumps builds a new encoder per call (measured ~45% of the key's cost).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=True, separators=(",", ":"))
_COLUMNS = frozenset({"key", "response_text", "response_raw", "created_at"})
_INSERT_SQL = (
    "INSERT OR REPLACE INTO cache (key, response_text, response_raw, created_at) "
    "VALUES (?, ?, ?, ?)"
)
# One SELECT per this many keys, far below SQLite's 32,766 host-parameter limit.
# Measured on 20,000 keys: 100 to 500 keys per query within a few percent of each
# other; 1,000 and 2,000 about 12% and 17% slower.
_READ_CHUNK = 500

# Our retry loop after SQLite's busy handler gives up, or when SQLite reports
# BUSY without calling it (WAL recovery, a lock upgrade): delays in seconds.
_LOCK_RETRIES = 6
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 2.0
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


class CacheUnavailableError(MinimaLlmError):
    """The prompt cache cannot be opened or read.

    Raised for a ``cache_dir`` that is a file or cannot be created, a directory
    where the database cannot be created, a file that is not an SQLite database
    (never deleted nor overwritten), a table with the wrong columns, a read that
    fails (corruption, I/O error), a lock held elsewhere beyond the whole wait
    budget, and use after :meth:`PromptCache.close`. The message names the path and
    the cause.
    """


class CacheWriteError(MinimaLlmError):
    """A batch of answers could not be written to the prompt cache.

    Raised by :meth:`PromptCache.put_many` for a read-only database or directory,
    a full disk, an I/O error or a lock held elsewhere beyond the whole wait budget.
    The failed batch is rolled back as a whole; rows written before stay intact.
    """


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One cache hit: the answer's text and the server's JSON body as text (or None)."""

    text: str
    raw_json: str | None


def canonical_request_json(model: str, req: MinimaLlmRequest) -> str:
    """The canonical JSON text that :func:`cache_key` hashes (useful to debug a miss).

    ``model`` and ``messages`` always; ``temperature`` and ``max_tokens`` when not
    None; ``extra`` when non-empty; keys sorted, ASCII only, no spaces, exactly as the
    original implementation did, so its caches keep hitting.
    """
    # json only encodes real dicts; copying the ones that already are costs time.
    messages = [m if type(m) is dict else dict(m) for m in req.messages]
    obj: dict[str, Any] = {"model": model, "messages": messages}
    if req.temperature is not None:
        obj["temperature"] = req.temperature
    if req.max_tokens is not None:
        obj["max_tokens"] = req.max_tokens
    if req.extra:
        obj["extra"] = dict(req.extra)
    return _CANONICAL.encode(obj)


def cache_key(model: str, req: MinimaLlmRequest) -> str:
    """The cache key of ``req`` sent to ``model``: SHA-256 hex of the canonical JSON.

    ``request_id`` is not part of it: identical prompts share one entry.
    """
    return hashlib.sha256(canonical_request_json(model, req).encode("ascii")).hexdigest()


def _is_busy(exc: sqlite3.Error) -> bool:
    """True when ``exc`` means another connection holds a lock (worth waiting for)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES
    msg = str(exc).lower()
    return "database is locked" in msg or "database table is locked" in msg


def _is_environmental(exc: sqlite3.Error) -> bool:
    """True for errors the world causes (disk, permissions, locks, corruption).

    Programming errors (``ProgrammingError``, ``IntegrityError`` …) are not: they
    propagate unchanged.
    """
    return type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)


def _with_lock_retry(fn: Callable[[], _T], sleep: Callable[[float], None]) -> _T:
    """Call ``fn``; while it fails with a lock error, back off and call it again.

    Delays before attempt n+1 (seconds): ``min(2.0, 0.05·2^(n-1))``, i.e. 0.05, 0.1,
    0.2, 0.4, 0.8, 1.6, then the last error propagates. Each attempt may itself wait
    up to the busy timeout inside SQLite.
    """
    delay = _FIRST_BACKOFF_S
    for _ in range(_LOCK_RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
        sleep(delay)
        delay = min(_MAX_BACKOFF_S, delay * 2)
    return fn()


def _connect(db_path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    # isolation_level=None: we issue BEGIN/COMMIT ourselves (BEGIN IMMEDIATE takes
    # the write lock up front, where SQLite's busy handler can wait for it).
    # check_same_thread=False: a lock per connection serialises its users instead.
    conn = sqlite3.connect(
        db_path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
    )
    try:
        conn.execute("PRAGMA synchronous=NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


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
        "_busy_timeout_s",
        "_closed",
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
        writer: sqlite3.Connection,
        *,
        journal_mode: str,
        busy_timeout_s: float,
        wall_clock: Callable[[], float],
        sleep: Callable[[float], None],
    ) -> None:
        """Private: use :meth:`open`."""
        self._db_path = db_path
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
        opened: list[sqlite3.Connection] = []
        try:
            writer = _connect(db_path, busy_timeout_s)
            opened.append(writer)
            journal_mode = _with_lock_retry(lambda: _prepare(writer, db_path), sleep)
            reader = _connect(db_path, busy_timeout_s)
            opened.append(reader)
            reader.execute("PRAGMA query_only=ON")
        except sqlite3.Error as exc:
            for conn in opened:
                conn.close()
            if not _is_environmental(exc):
                raise
            raise CacheUnavailableError(
                f"cannot open the prompt cache {str(db_path)!r}: {exc}{_hint(exc, directory)}"
            ) from exc
        except CacheUnavailableError:
            for conn in opened:
                conn.close()
            raise
        return cls(
            db_path,
            reader,
            writer,
            journal_mode=journal_mode,
            busy_timeout_s=busy_timeout_s,
            wall_clock=wall_clock,
            sleep=sleep,
        )

    @property
    def path(self) -> Path:
        """The database file."""
        return self._db_path

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
                for start in range(0, len(unique), _READ_CHUNK):
                    chunk = unique[start : start + _READ_CHUNK]
                    rows = _with_lock_retry(partial(_select, conn, chunk), self._sleep)
                    for key, text, raw in rows:
                        found[key] = CachedAnswer(text, raw)
            except sqlite3.Error as exc:
                if not _is_environmental(exc):
                    raise
                raise CacheUnavailableError(
                    f"cannot read the prompt cache {str(self._db_path)!r}: "
                    f"{exc}{self._lock_note(exc)}"
                ) from exc
        return found

    def put_many(self, rows: Sequence[tuple[str, str, str | None]]) -> None:
        """Write ``(key, text, raw_json)`` rows in one transaction; later rows win.

        ``INSERT OR REPLACE``, so a forced refresh overwrites the old answer. Lone
        surrogates, which UTF-8 cannot hold, are stored as U+FFFD.
        ``created_at`` is one ``wall_clock()`` reading for the whole batch (seconds
        since the epoch). All or nothing: on failure the batch is rolled back and
        :class:`CacheWriteError` is raised; rows written earlier stay intact.
        """
        if not rows:
            return
        now = self._wall_clock()
        params = [(key, text, raw, now) for key, text, raw in rows]
        with self._write_lock:
            conn = self._usable(self._writer, CacheWriteError)
            try:
                try:
                    _with_lock_retry(lambda: _write_batch(conn, params), self._sleep)
                except UnicodeEncodeError:
                    # A lone surrogate (a server may send one as a JSON escape) cannot
                    # be stored as UTF-8: keep the batch, with U+FFFD in its place.
                    params = [_scrub(p) for p in params]
                    _with_lock_retry(lambda: _write_batch(conn, params), self._sleep)
            except sqlite3.Error as exc:
                if not _is_environmental(exc):
                    raise
                raise CacheWriteError(
                    f"could not write {len(params)} answers to the prompt cache "
                    f"{str(self._db_path)!r}: {exc}{self._lock_note(exc)}; "
                    "answers written before are intact"
                ) from exc

    def close(self) -> None:
        """Close both connections (the last one out checkpoints the WAL); idempotent."""
        with self._read_lock, self._write_lock:
            if self._closed:
                return
            self._closed = True
            if os.getpid() != self._pid:
                # SQLite forbids using (or closing) a connection inherited across
                # fork(); the parent still owns these. Drop nothing, touch nothing.
                return
            try:
                self._reader.close()
            finally:
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
        if not _is_busy(exc):
            return ""
        return (
            f" (still locked by another connection after {_LOCK_RETRIES + 1} attempts "
            f"of up to {self._busy_timeout_s:g} s each)"
        )


def _prepare(writer: sqlite3.Connection, db_path: Path) -> str:
    """Switch to WAL, make the table if missing, check its columns; return the mode."""
    row = writer.execute("PRAGMA journal_mode=WAL").fetchone()
    journal_mode = str(row[0]) if row else "unknown"
    exists = writer.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'cache'"
    ).fetchone()
    if exists is None:
        # IF NOT EXISTS: another process may create it between our check and here.
        writer.execute(_CREATE_SQL)
    columns = {str(r[1]) for r in writer.execute("PRAGMA table_info(cache)").fetchall()}
    if not _COLUMNS.issubset(columns):
        raise CacheUnavailableError(
            f"the prompt cache {str(db_path)!r} has a table 'cache' with columns "
            f"{sorted(columns)}; expected at least {sorted(_COLUMNS)}"
        )
    return journal_mode


def _write_batch(
    conn: sqlite3.Connection, params: list[tuple[str, str, str | None, float]]
) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(_INSERT_SQL, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # SQLite may have rolled back already (e.g. SQLITE_FULL): keep the cause.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


_SURROGATE = re.compile("[\ud800-\udfff]")


def _scrub(
    row: tuple[str, str, str | None, float],
) -> tuple[str, str, str | None, float]:
    key, text, raw, now = row
    raw = None if raw is None else _SURROGATE.sub("\ufffd", raw)
    return _SURROGATE.sub("\ufffd", key), _SURROGATE.sub("\ufffd", text), raw, now


_SELECT_PREFIX = "SELECT key, response_text, response_raw FROM cache WHERE key IN ("
_FULL_CHUNK_SQL = _SELECT_PREFIX + ",".join("?" * _READ_CHUNK) + ")"


def _select(conn: sqlite3.Connection, chunk: list[str]) -> list[Any]:
    sql = _FULL_CHUNK_SQL if len(chunk) == _READ_CHUNK else _select_sql(len(chunk))
    return conn.execute(sql, chunk).fetchall()


def _select_sql(n: int) -> str:
    return _SELECT_PREFIX + ",".join("?" * n) + ")"


def _hint(exc: sqlite3.Error, directory: Path) -> str:
    """A human hint for the usual causes of an open failure."""
    msg = str(exc).lower()
    if "not a database" in msg:
        return " (the file was left untouched; move it away or point cache_dir elsewhere)"
    if "unable to open" in msg or "readonly" in msg:
        writable = os.access(directory, os.W_OK)
        return (
            " (is the directory writable? SQLite needs to create the database and "
            f"its -wal/-shm files there; os.access says writable={writable})"
        )
    return ""
