"""Spill files: answers kept beside the prompt cache while its database is locked.

When another process holds the database's write lock (or the disk is slow), the
:class:`~minimallm.actors.cache_writer.CacheWriter` appends its answers here instead
of waiting, and merges them into the database at its next commit that gets the lock.

Layout, beside ``<cache_dir>/minima_llm.db``::

    minima_llm.db.spill.<pid>.<random>.jsonl    one JSON array [key, text, raw] a line

Rules that keep two processes from ever corrupting one file and lose nothing:

- Each file has one owner, which holds an exclusive ``flock`` on it for as long as it
  uses it. A file is created under a temporary name, locked, and only then renamed to
  the pattern above, so nobody else ever sees it unlocked while its owner lives.
- Only the owner appends. Each append is one ``write`` of whole lines, so a SIGKILL
  leaves at most a torn last line, which the reader skips.
- A file whose lock can be taken belongs to a process that ended (the kernel drops a
  lock with its holder): an *orphan*. A writer adopts the orphans it can lock (after
  checking the name still points at the file it locked) and merges them with its own
  rows; the merged files are deleted after the commit that holds their rows. A crash
  between that commit and the delete only means the rows are merged again (the same
  answers: harmless).

Durability: appended rows survive the process being killed (they are in the OS's page
cache); after an OS crash the last appends may be lost, like SQLite's
``synchronous=NORMAL``. Every method blocks; the writer calls them in a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from minimallm._cache.store import StoreRow

try:
    import fcntl
except ImportError:  # not POSIX: no spill files (a locked cache keeps answers in memory)
    fcntl = None  # type: ignore[assignment]

__all__ = ["SPILL_GLOB", "Row", "SpillFiles"]

Row = StoreRow

SPILL_GLOB = "*.spill.*.jsonl"
"""The spill files' names inside the cache directory (after the database's name)."""


class _Held:
    """One spill file this process holds the lock of."""

    __slots__ = ("file", "path")

    def __init__(self, path: Path, file: IO[bytes]) -> None:
        self.path = path
        self.file = file


class SpillFiles:
    """This process's spill file (made on first append) and the orphans it adopted."""

    __slots__ = ("_adopted", "_db_path", "_own", "_rows")

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self._own: _Held | None = None
        self._adopted: list[_Held] = []
        self._rows = 0

    def __repr__(self) -> str:
        return f"<SpillFiles {str(self._db_path)!r} rows={self._rows} files={len(self.paths)}>"

    @property
    def rows(self) -> int:
        """Rows appended by this process since the last :meth:`clear` (orphans not
        counted: their size is unknown until read)."""
        return self._rows

    @property
    def paths(self) -> list[Path]:
        """The files held now: adopted orphans first, then this process's own."""
        held = [*self._adopted, *([self._own] if self._own else [])]
        return [h.path for h in held]

    @property
    def own_path(self) -> Path | None:
        """This process's spill file, once something was appended."""
        return None if self._own is None else self._own.path

    def adopt_orphans(self) -> int:
        """Take over every spill file beside the database whose owner has ended;
        returns how many were adopted. Files that vanish or are locked are skipped."""
        held = {h.path for h in self._adopted}
        if self._own is not None:
            held.add(self._own.path)
        found = 0
        for path in sorted(self._db_path.parent.glob(self._db_path.name + SPILL_GLOB[1:])):
            if path in held:
                continue
            taken = _try_lock(path)
            if taken is not None:
                self._adopted.append(taken)
                found += 1
        return found

    def append(self, rows: Iterable[Row]) -> None:
        """Append ``rows`` in one write (creating this process's file if needed).
        Raises OSError (disk full, read-only directory); then nothing was appended
        beyond, at worst, a torn line that readers skip."""
        lines = [json.dumps(list(row), ensure_ascii=True) + "\n" for row in rows]
        if not lines:
            return
        if self._own is None:
            self._own = _create(self._db_path)
        data = "".join(lines).encode("ascii")
        fd = self._own.file.fileno()
        view = memoryview(data)
        while view:
            written = os.write(fd, view)
            view = view[written:]
        self._rows += len(lines)

    def read(self) -> list[Row]:
        """Every row held, oldest first (orphans, then this process's own)."""
        out: list[Row] = []
        for path in self.paths:
            with path.open("rb") as f:
                for line in f:
                    row = _parse(line)
                    if row is not None:
                        out.append(row)
        return out

    def clear(self) -> None:
        """Forget the rows (they are committed): delete the adopted files, empty ours."""
        for held in self._adopted:
            with contextlib.suppress(FileNotFoundError):
                held.path.unlink()
            held.file.close()
        self._adopted.clear()
        if self._own is not None:
            os.ftruncate(self._own.file.fileno(), 0)
        self._rows = 0

    def close(self) -> None:
        """Release every lock. An empty file of ours is deleted; a file with rows stays
        for the next process that opens the cache (it adopts and merges it)."""
        for held in self._adopted:
            held.file.close()
        self._adopted.clear()
        if self._own is not None:
            own, self._own = self._own, None
            with contextlib.suppress(OSError):
                if os.fstat(own.file.fileno()).st_size == 0:
                    own.path.unlink()
            own.file.close()


def _create(db_path: Path) -> _Held:
    if fcntl is None:
        raise OSError("spill files need POSIX file locks (fcntl)")
    token = f"{os.getpid()}.{secrets.token_hex(4)}"
    temporary = db_path.parent / f".{db_path.name}.spilling.{token}"
    final = db_path.parent / f"{db_path.name}.spill.{token}.jsonl"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
    file = os.fdopen(fd, "ab", buffering=0)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.replace(temporary, final)
    except BaseException:
        file.close()
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
    return _Held(final, file)


def _try_lock(path: Path) -> _Held | None:
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    except OSError:
        return None
    file = os.fdopen(fd, "ab", buffering=0)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        # Another adopter may have merged and deleted it between our open and lock.
        if os.stat(path).st_ino != os.fstat(fd).st_ino:
            raise FileNotFoundError(path)
    except OSError:
        file.close()
        return None
    return _Held(path, file)


def _parse(line: bytes) -> Row | None:
    try:
        value = json.loads(line)
    except ValueError:
        return None  # a torn last line (the writer was killed mid-append)
    if (
        isinstance(value, list)
        and 3 <= len(value) <= 6
        and isinstance(value[0], str)
        and isinstance(value[1], str)
        and all(v is None or isinstance(v, str) for v in value[2:5])
        and (len(value) < 6 or value[5] is None or isinstance(value[5], int | float))
    ):
        return StoreRow(*value)
    return None
