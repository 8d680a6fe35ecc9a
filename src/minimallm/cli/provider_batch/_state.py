"""The state of a provider-batch run: one SQLite file beside OUTPUT.

``OUTPUT.provider-batch.db`` (stdlib ``sqlite3``, ``synchronous=FULL``: every commit is
on the disk before the call returns) holds::

    meta(key, value)        run id, input size and request count, model, API root,
                            the first request the run planned (``first``), planned
    lines(n, custom_id, key, chunk)
                            one row per request from ``first`` on (``n``: its 0-based
                            number among the input's requests); ``chunk``: the batch
                            file it was last sent in (NULL: answered without one)
    results(n, ...)         every answer that came back (or came from the cache),
                            waiting to be written to OUTPUT/ERRORS in input order
    chunks(id, name, ...)   one row per uploaded file: its deterministic name
                            (``minimallm-<run id>-<id>.jsonl``), line count, bytes,
                            file id, batch id, last status seen, collected yet

Why SQLite rather than a JSON file rewritten with temp + fsync + rename: the per-line
records (120,000 lines, or millions) are neither held in memory nor rewritten whole at
each step, and a transaction makes "the results of a batch and the mark that it was
collected" one atomic step. A SIGKILL at any moment leaves the last committed state.

Every step that talks to the provider records its intent first: a chunk row (with its
name) exists before its upload starts, so a run killed between "upload done" and
"file id saved" finds the file by that name in the provider's file list instead of
uploading it again; likewise a batch is found by its input file id.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FINAL", "Chunk", "ResultRow", "RunState", "state_path"]

FINAL = frozenset({"completed", "expired", "cancelled", "failed"})
"""Batch statuses after which nothing more changes."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS lines(
    n INTEGER PRIMARY KEY, custom_id TEXT NOT NULL, key TEXT NOT NULL, chunk INTEGER);
CREATE INDEX IF NOT EXISTS lines_by_id ON lines(custom_id);
CREATE TABLE IF NOT EXISTS results(
    n INTEGER PRIMARY KEY, ok INTEGER NOT NULL, text TEXT, raw TEXT, error_type TEXT,
    message TEXT, attempts INTEGER, status INTEGER, snippet TEXT);
CREATE TABLE IF NOT EXISTS chunks(
    id INTEGER PRIMARY KEY, name TEXT NOT NULL, lines INTEGER NOT NULL,
    bytes INTEGER NOT NULL, file_id TEXT, batch_id TEXT, status TEXT,
    info TEXT, collected INTEGER NOT NULL DEFAULT 0);
"""

ResultRow = tuple[int, int, str | None, str | None, str | None, str | None, int | None,
                  int | None, str | None]  # fmt: skip
"""``(n, ok, text, raw, error_type, message, attempts, status, snippet)``."""


def state_path(output: str) -> Path:
    """Where the state of a run writing ``output`` lives."""
    return Path(output + ".provider-batch.db")


@dataclass(frozen=True, slots=True)
class Chunk:
    """One uploaded (or about to be uploaded) batch file."""

    id: int
    name: str
    lines: int
    bytes: int
    file_id: str | None
    batch_id: str | None
    status: str | None
    info: dict[str, Any]
    collected: bool


class RunState:
    """The open state file (one process at a time: the caller holds OUTPUT's lock)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        """Close the file."""
        self._db.close()

    def __repr__(self) -> str:
        return f"<RunState {str(self.path)!r}>"

    # -- meta -------------------------------------------------------------------------

    def meta(self) -> dict[str, str]:
        """Every ``meta`` entry."""
        return dict(self._db.execute("SELECT key, value FROM meta").fetchall())

    def start(self, entries: dict[str, str]) -> str:
        """Begin a plan: forget any half-made one, store ``entries`` and a new run id
        (returned)."""
        run_id = secrets.token_hex(6)
        with self.transaction():
            for table in ("meta", "lines", "results", "chunks"):
                self._db.execute(f"DELETE FROM {table}")  # fixed names, not input
            rows = {**entries, "run_id": run_id}
            self._db.executemany("INSERT INTO meta VALUES (?, ?)", rows.items())
        return run_id

    def set_meta(self, key: str, value: str) -> None:
        """Store one ``meta`` entry."""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    # -- transactions -----------------------------------------------------------------

    class _Tx:
        def __init__(self, db: sqlite3.Connection) -> None:
            self._db = db

        def __enter__(self) -> None:
            self._db.execute("BEGIN IMMEDIATE")

        def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")

    def transaction(self) -> RunState._Tx:
        """``with state.transaction():`` everything inside commits at once, or not at all."""
        return RunState._Tx(self._db)

    # -- lines and results ------------------------------------------------------------

    def add_lines(self, rows: Iterable[tuple[int, str, str, int | None]]) -> None:
        """``(n, custom_id, cache key, chunk or None)`` rows."""
        self._db.executemany("INSERT OR REPLACE INTO lines VALUES (?, ?, ?, ?)", rows)

    def add_results(self, rows: Iterable[ResultRow]) -> None:
        """Results; a request that already has one keeps it."""
        self._db.executemany("INSERT OR IGNORE INTO results VALUES (?,?,?,?,?,?,?,?,?)", rows)

    def line_of(self, custom_id: str) -> tuple[int, str, int | None, bool] | None:
        """``(n, cache key, chunk, has a result)`` of the request ``custom_id``."""
        row = self._db.execute(
            "SELECT l.n, l.key, l.chunk, r.n IS NOT NULL FROM lines l "
            "LEFT JOIN results r ON r.n = l.n WHERE l.custom_id = ?",
            (custom_id,),
        ).fetchone()
        return None if row is None else (row[0], row[1], row[2], bool(row[3]))

    def results_from(self, n: int) -> Iterator[tuple[str, ResultRow]]:
        """``(custom_id, result)`` of requests ``n, n+1, ...`` while each has a result."""
        cursor = self._db.execute(
            "SELECT l.custom_id, r.* FROM results r JOIN lines l ON l.n = r.n "
            "WHERE r.n >= ? ORDER BY r.n",
            (n,),
        )
        for custom_id, *row in cursor:
            if row[0] != n:
                break
            yield custom_id, tuple(row)
            n += 1
        cursor.close()

    def unanswered(self, first: int) -> Iterator[tuple[int, str]]:
        """``(n, custom_id)`` from ``first`` on, in order, of requests without a result
        whose batch is over (collected): the ones to send again."""
        cursor = self._db.execute(
            "SELECT l.n, l.custom_id FROM lines l JOIN chunks c ON c.id = l.chunk "
            "WHERE l.n >= ? AND c.collected = 1 AND NOT EXISTS "
            "(SELECT 1 FROM results r WHERE r.n = l.n) ORDER BY l.n",
            (first,),
        )
        yield from cursor
        cursor.close()

    def missing(self, chunk: int, shown: int = 5) -> tuple[int, list[str]]:
        """(how many requests sent in ``chunk`` have no result, the first ``shown`` of
        their custom_ids)."""
        where = (
            "FROM lines l WHERE l.chunk = ? AND NOT EXISTS "
            "(SELECT 1 FROM results r WHERE r.n = l.n)"
        )
        count = self._db.execute(f"SELECT COUNT(*) {where}", (chunk,)).fetchone()[0]
        ids = self._db.execute(
            f"SELECT l.custom_id {where} ORDER BY l.n LIMIT ?", (chunk, shown)
        ).fetchall()
        return int(count), [str(r[0]) for r in ids]

    def counts(self, first: int) -> tuple[int, int, int]:
        """(requests from ``first`` on, of which with a result, of which in a batch not
        yet collected)."""
        row = self._db.execute(
            "SELECT COUNT(*), COUNT(r.n), "
            "SUM(r.n IS NULL AND c.collected = 0) FROM lines l "
            "LEFT JOIN results r ON r.n = l.n LEFT JOIN chunks c ON c.id = l.chunk "
            "WHERE l.n >= ?",
            (first,),
        ).fetchone()
        return int(row[0]), int(row[1]), int(row[2] or 0)

    # -- chunks -----------------------------------------------------------------------

    def new_chunk(self, chunk: int, name: str, lines: int, size: int) -> None:
        """Record a chunk whose file is written and not yet uploaded."""
        self._db.execute(
            "INSERT INTO chunks(id, name, lines, bytes) VALUES (?, ?, ?, ?)",
            (chunk, name, lines, size),
        )

    def set_status(self, chunk: int, status: str) -> None:
        """Record an intent (``uploading``, ``creating``) before the call that may do it."""
        self._db.execute("UPDATE chunks SET status = ? WHERE id = ?", (status, chunk))

    def next_chunk_id(self) -> int:
        """The id the next chunk will get."""
        row = self._db.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM chunks").fetchone()
        return int(row[0])

    def chunks(self) -> list[Chunk]:
        """Every chunk, oldest first (a handful: one per 50,000 lines)."""
        rows = self._db.execute(
            "SELECT id, name, lines, bytes, file_id, batch_id, status, info, collected "
            "FROM chunks ORDER BY id"
        ).fetchall()
        return [
            Chunk(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7] or "{}"), bool(r[8]))
            for r in rows
        ]

    def set_file(self, chunk: int, file_id: str) -> None:
        """The chunk's file is uploaded."""
        self._db.execute("UPDATE chunks SET file_id = ? WHERE id = ?", (file_id, chunk))

    def set_batch(self, chunk: int, batch: dict[str, Any]) -> None:
        """The chunk's batch as last seen (its id, status and the fields shown)."""
        keep = ("status", "request_counts", "expires_at", "created_at", "output_file_id",
                "error_file_id", "errors", "completion_window")  # fmt: skip
        info = json.dumps({k: batch.get(k) for k in keep})
        self._db.execute(
            "UPDATE chunks SET batch_id = ?, status = ?, info = ? WHERE id = ?",
            (batch["id"], batch.get("status"), info, chunk),
        )

    def set_collected(self, chunk: int) -> None:
        """The chunk's results are all in ``results`` (inside the same transaction)."""
        self._db.execute("UPDATE chunks SET collected = 1 WHERE id = ?", (chunk,))
