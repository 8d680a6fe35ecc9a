"""The prompt cache's SQLite plumbing: connections, schema check, lock waits, statements.

Everything that speaks SQL or interprets an ``sqlite3`` error lives here; the store,
:class:`minimallm._cache.store.PromptCache`, owns the connections and turns what these
functions raise into :class:`~minimallm._errors.CacheUnavailableError` or
:class:`~minimallm._errors.CacheWriteError` with a message naming the file. Every
function here blocks.
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from minimallm._errors import CacheUnavailableError

__all__ = [
    "LOCK_RETRIES",
    "READ_CHUNK",
    "StoredRow",
    "connect",
    "connect_read_only",
    "is_busy",
    "is_environmental",
    "is_read_only_error",
    "may_write",
    "open_connections",
    "open_hint",
    "prepare",
    "scrub_surrogates",
    "select_chunk",
    "select_rows",
    "with_lock_retry",
    "write_batch",
]

_T = TypeVar("_T")

# A new table has minima-llm 0.2.7's audit columns (``model``: the model name in the
# key, ``canonical``: the JSON text hashed into it), so both libraries share one file
# without a migration. An existing table is never altered: without those columns it
# simply gets rows without them (minima-llm adds them itself when it opens the file).
_CREATE_SQL = (
    "CREATE TABLE IF NOT EXISTS cache ("
    "key TEXT PRIMARY KEY, response_text TEXT NOT NULL, "
    "response_raw TEXT, created_at REAL, model TEXT, canonical TEXT)"
)
_COLUMNS = frozenset({"key", "response_text", "response_raw", "created_at"})
AUDIT_COLUMNS = frozenset({"model", "canonical"})
"""minima-llm 0.2.7's columns, written when the table has them."""
_INSERT_SQL = (
    "INSERT OR REPLACE INTO cache (key, response_text, response_raw, created_at) "
    "VALUES (?, ?, ?, ?)"
)
_INSERT_AUDIT_SQL = (
    "INSERT OR REPLACE INTO cache "
    "(key, response_text, response_raw, created_at, model, canonical) "
    "VALUES (?, ?, ?, ?, ?, ?)"
)
Params = (
    tuple[str, str, str | None, float] | tuple[str, str, str | None, float, str | None, str | None]
)
"""One row to write: ``(key, text, raw, created_at)``, plus ``(model, canonical)`` for
a table with the audit columns."""
# One SELECT per this many keys, far below SQLite's 32,766 host-parameter limit.
# Measured on 20,000 keys: 100 to 500 keys per query within a few percent of each
# other; 1,000 and 2,000 about 12% and 17% slower.
READ_CHUNK = 500

# Our retry loop after SQLite's busy handler gives up, or when SQLite reports
# BUSY without calling it (WAL recovery, a lock upgrade): delays in seconds.
LOCK_RETRIES = 6
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 2.0
_BUSY_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})


def is_busy(exc: sqlite3.Error) -> bool:
    """True when ``exc`` means another connection holds a lock (worth waiting for)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return (code & 0xFF) in _BUSY_CODES
    msg = str(exc).lower()
    return "database is locked" in msg or "database table is locked" in msg


def is_environmental(exc: sqlite3.Error) -> bool:
    """True for errors the world causes (disk, permissions, locks, corruption).

    Programming errors (``ProgrammingError``, ``IntegrityError`` …) are not: they
    propagate unchanged.
    """
    return type(exc) in (sqlite3.OperationalError, sqlite3.DatabaseError)


def with_lock_retry(fn: Callable[[], _T], sleep: Callable[[float], None]) -> _T:
    """Call ``fn``; while it fails with a lock error, back off and call it again.

    Delays before attempt n+1 (seconds): ``min(2.0, 0.05·2^(n-1))``, i.e. 0.05, 0.1,
    0.2, 0.4, 0.8, 1.6, then the last error propagates. Each attempt may itself wait
    up to the busy timeout inside SQLite.
    """
    delay = _FIRST_BACKOFF_S
    for _ in range(LOCK_RETRIES):
        try:
            return fn()
        except sqlite3.OperationalError as exc:
            if not is_busy(exc):
                raise
        sleep(delay)
        delay = min(_MAX_BACKOFF_S, delay * 2)
    return fn()


def connect(db_path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A connection to ``db_path`` that waits up to ``busy_timeout_s`` seconds for a lock."""
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


def connect_read_only(db_path: Path, busy_timeout_s: float) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``) to an existing ``db_path``: nothing in the
    file or its directory is changed. A WAL database in a directory this process may
    not write (a team's shared cache) cannot be opened so; then it is opened as
    ``immutable`` (no locks: right for a file nobody writes while it is read; rows
    still in its ``-wal`` file, not yet checkpointed, are not seen then: a writer that
    closed cleanly leaves none)."""
    uri = db_path.resolve().as_uri()
    try:
        conn = sqlite3.connect(
            f"{uri}?mode=ro", uri=True, timeout=busy_timeout_s, check_same_thread=False
        )
        conn.execute("SELECT 1 FROM cache LIMIT 1").fetchall()
    except sqlite3.OperationalError as exc:
        if "unable to open" not in str(exc).lower() and "readonly" not in str(exc).lower():
            raise
        conn = sqlite3.connect(
            f"{uri}?mode=ro&immutable=1", uri=True, timeout=busy_timeout_s,
            check_same_thread=False,
        )  # fmt: skip
    try:
        conn.execute("PRAGMA query_only=ON")
        columns = {str(r[1]) for r in conn.execute("PRAGMA table_info(cache)").fetchall()}
    except BaseException:
        conn.close()
        raise
    if not _COLUMNS.issubset(columns):
        conn.close()
        raise CacheUnavailableError(
            f"the lookup cache {str(db_path)!r} has a table 'cache' with columns "
            f"{sorted(columns)}; expected at least {sorted(_COLUMNS)}"
        )
    return conn


def prepare(writer: sqlite3.Connection, db_path: Path) -> tuple[str, bool]:
    """Switch to WAL, make the table if missing, check its columns; return the mode and
    whether the table has minima-llm's audit columns (:data:`AUDIT_COLUMNS`)."""
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
    return journal_mode, AUDIT_COLUMNS.issubset(columns)


def write_batch(conn: sqlite3.Connection, params: list[Params]) -> None:
    """Insert-or-replace rows in one transaction: ``(key, text, raw, created_at)``, or
    with ``(model, canonical)`` too (all rows of one batch have the same length)."""
    sql = _INSERT_AUDIT_SQL if params and len(params[0]) == 6 else _INSERT_SQL
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.executemany(sql, params)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            # SQLite may have rolled back already (e.g. SQLITE_FULL): keep the cause.
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


_SURROGATE = re.compile("[\ud800-\udfff]")


def scrub_surrogates(row: Params) -> Params:
    """``row`` with every lone surrogate (which UTF-8 cannot hold) replaced by U+FFFD."""
    scrubbed = tuple(v if not isinstance(v, str) else _SURROGATE.sub("\ufffd", v) for v in row)
    return scrubbed  # type: ignore[return-value]


_SELECT_PREFIX = "SELECT key, response_text, response_raw FROM cache WHERE key IN ("
_FULL_CHUNK_SQL = _SELECT_PREFIX + ",".join("?" * READ_CHUNK) + ")"


def select_chunk(conn: sqlite3.Connection, chunk: list[str]) -> list[Any]:
    """The ``(key, response_text, response_raw)`` rows among at most READ_CHUNK keys."""
    sql = _FULL_CHUNK_SQL if len(chunk) == READ_CHUNK else _select_sql(len(chunk))
    return conn.execute(sql, chunk).fetchall()


def _select_sql(n: int) -> str:
    return _SELECT_PREFIX + ",".join("?" * n) + ")"


_ROWS_PREFIX = "SELECT key, response_text, response_raw, created_at FROM cache WHERE key IN ("


class StoredRow(NamedTuple):
    """A row as read, with its time (seconds since the epoch; 0.0 when NULL)."""

    text: str
    raw_json: str | None
    created_at: float


def _select_rows_chunk(conn: sqlite3.Connection, chunk: list[str]) -> list[Any]:
    return conn.execute(_ROWS_PREFIX + ",".join("?" * len(chunk)) + ")", chunk).fetchall()


def select_rows(
    conn: sqlite3.Connection, keys: Sequence[str], sleep: Callable[[float], None]
) -> dict[str, StoredRow]:
    """The rows among ``keys`` with their ``created_at`` (for "the newest row wins"
    across caches and model names), READ_CHUNK keys per SELECT, waiting out locks."""
    found: dict[str, StoredRow] = {}
    unique = list(dict.fromkeys(keys))
    for start in range(0, len(unique), READ_CHUNK):
        chunk = unique[start : start + READ_CHUNK]
        for key, text, raw, at in with_lock_retry(partial(_select_rows_chunk, conn, chunk), sleep):
            found[key] = StoredRow(text, raw, float(at) if isinstance(at, int | float) else 0.0)
    return found


def open_connections(
    db_path: Path, busy_timeout_s: float, sleep: Callable[[float], None]
) -> tuple[sqlite3.Connection, sqlite3.Connection | None, str, bool]:
    """The prompt cache's ``(reader, writer, journal_mode, audit)`` on ``db_path``
    (created if missing, see :func:`prepare`). An existing file this process may not
    write, or whose directory it may not write, is opened as a lookup cache is
    (:func:`connect_read_only`) with no writer (None) and the mode ``"read-only"``.
    Raises CacheUnavailableError naming the file (and the usual cause)."""
    if db_path.is_file() and not may_write(db_path):
        return _read_only(db_path, busy_timeout_s, None)
    opened: list[sqlite3.Connection] = []
    try:
        writer = connect(db_path, busy_timeout_s)
        opened.append(writer)
        journal_mode, audit = with_lock_retry(lambda: prepare(writer, db_path), sleep)
        reader = connect(db_path, busy_timeout_s)
        opened.append(reader)
        reader.execute("PRAGMA query_only=ON")
    except sqlite3.Error as exc:
        for conn in opened:
            conn.close()
        if not is_environmental(exc):
            raise
        if db_path.is_file() and is_read_only_error(exc):
            return _read_only(db_path, busy_timeout_s, exc)
        raise CacheUnavailableError(
            f"cannot open the prompt cache {str(db_path)!r}: {exc}{open_hint(exc, db_path.parent)}"
        ) from exc
    except CacheUnavailableError:
        for conn in opened:
            conn.close()
        raise
    return reader, writer, journal_mode, audit


def _read_only(
    db_path: Path, busy_timeout_s: float, cause: sqlite3.Error | None
) -> tuple[sqlite3.Connection, None, str, bool]:
    try:
        reader = connect_read_only(db_path, busy_timeout_s)
    except sqlite3.Error as exc:
        if not is_environmental(exc):
            raise
        why = cause or exc
        raise CacheUnavailableError(
            f"cannot open the prompt cache {str(db_path)!r}: {why}{open_hint(why, db_path.parent)}"
        ) from exc
    return reader, None, "read-only", False


def may_write(db_path: Path) -> bool:
    """The file and its directory (where SQLite makes ``-wal``/``-shm``) are writable
    by this process (``os.access``: a read-only mount says no even to root)."""
    return os.access(db_path, os.W_OK) and os.access(db_path.parent, os.W_OK)


def is_read_only_error(exc: sqlite3.Error) -> bool:
    """True when ``exc`` says the file or its directory may not be written."""
    msg = str(exc).lower()
    return "readonly" in msg or "unable to open" in msg


def open_hint(exc: sqlite3.Error, directory: Path) -> str:
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
