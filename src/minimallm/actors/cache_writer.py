"""CacheWriter: batches answers into SQLite transactions, off the trio thread.

Answers arrive on a channel. One task takes them as they come (into memory, never
waiting on the disk); another commits them when ``max_rows`` are held or the oldest
has waited ``max_delay_s`` seconds, in a worker thread, so SQLite never blocks the
event loop and a slow commit never blocks the senders. A :class:`Flush` message
commits at once and answers when every row sent before it is safe.

The cache never holds answers hostage. A commit waits at most ``lock_wait_s`` for the
database's write lock; when another process holds it, the rows go to a spill file
beside the database (:mod:`minimallm._cache.spill`) and count as safe (a Flush
answers), and the writer tries the database again every ``retry_s`` seconds, merging
the spilled rows in the first commit that gets the lock. A warning names the locked
file when it is first found locked, and another says when the kept answers are in.
Rows in memory are bounded (``max_memory_rows``: beyond it the writer stops taking
answers until a commit or spill makes room — the backpressure of a disk that cannot
keep up at all). Spill files left by a process that ended are adopted at start.

On cancellation — close, abort, Ctrl-C — whatever is buffered or still in the channel
is written in a shielded final commit: nothing paid for is lost on an orderly stop.
Then the inbox is closed, so a Flush sent to a writer that has stopped fails at once
(``BrokenResourceError``) and never waits. If the database is still locked, the
writer retries for ``close_wait_s`` and then leaves its spill file (with a warning
naming it) for the next process that opens the cache. A SIGKILL loses at most the
rows younger than ``max_delay_s`` (documented in the README). The writer closes the
store after its final commit.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import trio

from minimallm._cache.spill import Row, SpillFiles
from minimallm._cache.store import CacheLockedError, CacheWriteError, PromptCache, StoreRow

__all__ = ["CacheRow", "CacheWriter", "CacheWriterStatistics", "Flush"]

FINAL_ROUNDS = 100
"""Commits a stopping writer makes while answers keep arriving before it refuses more
(answers still in flight when a backend closes; a bound, so a stop always ends)."""

LOCK_WAIT_S = 0.5
"""Seconds one commit waits for a write lock held by another process before spilling."""
RETRY_S = 1.0
"""Seconds between attempts at a locked database (spilling in between)."""
CLOSE_WAIT_S = 2.0
"""Seconds a stopping writer keeps trying a locked database before leaving its spill."""
MAX_MEMORY_ROWS = 20_000
"""Rows held in memory at most; beyond, senders wait (only when spilling fails too)."""
LOCK_WARN_EVERY_S = 60.0
"""A database that is locked again and again is reported at most this often."""


@dataclass(frozen=True, slots=True)
class CacheRow:
    """One answer to store: key, text, the server's JSON body as text; ``model`` and
    ``canonical`` fill minima-llm 0.2.7's columns where the table has them."""

    key: str
    text: str
    raw_json: str | None
    model: str | None = None
    canonical: str | None = None


@dataclass(frozen=True, slots=True)
class CacheWriterStatistics:
    """Answers waiting for the next commit, answers written so far, and answers kept
    in a spill file while the database is locked."""

    pending: int
    written: int
    spilled: int = 0


@dataclass(frozen=True, slots=True)
class Flush:
    """Commit everything buffered now; ``done`` is set once every row sent before it is
    on disk — in the database, or in a spill file while the database is locked — or
    the store refused it (which the writer reports as a warning)."""

    done: trio.Event


class _Outcome(Enum):
    COMMITTED = "committed"
    SPILLED = "spilled"  # the database is locked; the rows are in the spill file
    KEPT = "kept"  # locked and the spill failed: the rows are back in memory
    REFUSED = "refused"  # the store refused them (reported once)


class CacheWriter:
    """Owns the pending rows; commits them in batches, spills them while locked."""

    __slots__ = (
        "_cache",
        "_close_wait_s",
        "_inbox",
        "_kick",
        "_lock_wait_s",
        "_locked_since",
        "_max_delay_s",
        "_max_memory_rows",
        "_max_rows",
        "_next_try",
        "_oldest",
        "_pending",
        "_retry_s",
        "_room",
        "_spill",
        "_spill_warned",
        "_waiters",
        "_warn",
        "_warned",
        "_warned_lock_at",
        "_written",
    )

    def __init__(
        self,
        cache: PromptCache,
        inbox: trio.MemoryReceiveChannel[CacheRow | Flush],
        warn: Callable[[str], None],
        *,
        max_rows: int = 256,
        max_delay_s: float = 0.5,
        lock_wait_s: float = LOCK_WAIT_S,
        retry_s: float = RETRY_S,
        close_wait_s: float = CLOSE_WAIT_S,
        max_memory_rows: int = MAX_MEMORY_ROWS,
    ) -> None:
        self._cache = cache
        self._inbox = inbox
        self._warn = warn
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._lock_wait_s = lock_wait_s
        self._retry_s = retry_s
        self._close_wait_s = close_wait_s
        self._max_memory_rows = max(1, max_memory_rows)
        self._pending: dict[str, Row] = {}
        self._waiters: list[trio.Event] = []
        self._spill = SpillFiles(cache.path)
        self._kick = trio.Event()
        self._room = trio.Event()
        self._oldest = math.inf  # when the oldest pending row arrived
        self._next_try = -math.inf  # when a locked database is tried again
        self._locked_since: float | None = None
        self._warned_lock_at = -math.inf
        self._warned = False
        self._spill_warned = False
        self._written = 0

    def __repr__(self) -> str:
        return (
            f"<CacheWriter pending={len(self._pending)} written={self._written} "
            f"spilled={self._spill.rows}>"
        )

    def statistics(self) -> CacheWriterStatistics:
        """A frozen snapshot: answers waiting for a commit, answers written so far,
        answers kept in a spill file while the database is locked."""
        return CacheWriterStatistics(len(self._pending), self._written, self._spill.rows)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Collect and commit until cancelled or the inbox closes; then commit the rest."""
        try:
            if await trio.to_thread.run_sync(self._adopt_orphans):
                self._next_try = trio.current_time()  # merge them at the first commit
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._commit_loop)
                task_status.started()
                await self._receive_loop()
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._final_commits()
                finally:
                    # Even if a commit raised (a bug: the error propagates from here),
                    # nobody may wait on this writer any more.
                    self._inbox.close()
                    self._wake_waiters(len(self._waiters))
                    # The writer stops last among the cache's users: it closes the store.
                    await trio.to_thread.run_sync(self._spill.close)
                    await trio.to_thread.run_sync(self._cache.close)

    def _adopt_orphans(self) -> int:
        try:
            return self._spill.adopt_orphans()
        except OSError:  # an unreadable directory: the orphans wait for another opener
            return 0

    # -- taking answers ---------------------------------------------------------------

    async def _receive_loop(self) -> None:
        while True:
            while len(self._pending) >= self._max_memory_rows:
                self._room = trio.Event()
                self._kick.set()
                await self._room.wait()
            try:
                message = await self._inbox.receive()
            except trio.EndOfChannel:
                return
            self._absorb(message)
            self._drain(self._max_memory_rows)

    def _absorb(self, message: CacheRow | Flush) -> None:
        if isinstance(message, Flush):
            self._waiters.append(message.done)
            self._kick.set()
            return
        if not self._pending:
            self._oldest = trio.current_time()
            self._kick.set()
        m = message
        self._pending[m.key] = StoreRow(m.key, m.text, m.raw_json, m.model, m.canonical)
        if len(self._pending) >= self._max_rows:
            self._kick.set()

    def _drain(self, bound: float = math.inf) -> None:
        while len(self._pending) < bound:
            try:
                message = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            self._absorb(message)

    # -- committing -------------------------------------------------------------------

    async def _commit_loop(self) -> None:
        while True:
            with trio.move_on_at(self._due()):
                await self._kick.wait()
                self._kick = trio.Event()
                continue
            await self._step()

    def _due(self) -> float:
        """When the next commit (or spill) is due."""
        due = math.inf
        if self._waiters or len(self._pending) >= self._max_rows:
            return -math.inf
        if self._pending:
            due = self._oldest + self._max_delay_s
        if self._spill.paths:  # rows wait for the lock to free
            due = min(due, self._next_try)
        return due

    async def _step(self) -> _Outcome:
        """Write what is pending (with the spill, if the database can be tried now),
        then wake the flushers whose rows are safe. Shielded: a cancel already pending
        would make the thread hop raise before the thread starts, and rows taken out of
        ``_pending`` must land somewhere before anyone is told they did."""
        rows, self._pending = list(self._pending.values()), {}
        self._oldest = math.inf
        waiting = len(self._waiters)
        try_db = trio.current_time() >= self._next_try
        with trio.CancelScope(shield=True):
            outcome, count, detail = await trio.to_thread.run_sync(
                self._write_blocking, rows, try_db
            )
        now = trio.current_time()
        if outcome is _Outcome.COMMITTED:
            self._written += count
            if self._locked_since is not None:
                self._warn(
                    f"minimallm: the prompt cache {str(self._cache.path)!r} is unlocked "
                    f"after {now - self._locked_since:.0f} s; the answers kept meanwhile "
                    "are written"
                )
                self._locked_since = None
            self._next_try = -math.inf
        elif outcome in (_Outcome.SPILLED, _Outcome.KEPT):
            if try_db:
                self._next_try = now + self._retry_s
                self._report_lock(now)
            if outcome is _Outcome.KEPT:  # back in memory, older than what came since
                self._pending = {r[0]: r for r in rows} | self._pending
                self._oldest = now
                if not self._spill_warned:
                    self._spill_warned = True
                    self._warn(
                        f"minimallm: the prompt cache {str(self._cache.path)!r} is locked "
                        f"and its answers cannot be kept beside it ({detail}); they wait "
                        f"in memory (up to {self._max_memory_rows:,})"
                    )
        elif outcome is _Outcome.REFUSED and not self._warned:
            self._warned = True
            self._warn(f"minimallm: answers are not being cached: {detail}")
        self._wake_waiters(waiting)
        self._room.set()
        return outcome

    def _write_blocking(self, rows: list[Row], try_db: bool) -> tuple[_Outcome, int, str]:
        """In a worker thread: commit ``rows`` (after the spilled ones) if the database
        is free, else append them to the spill file. Returns the outcome, the rows
        written, and what went wrong (for the warning)."""
        if try_db:
            kept: list[Row] | None = []
            if self._spill.paths:
                try:
                    kept = self._spill.read()
                except OSError:  # e.g. removed by hand: commit ours, keep the rest for later
                    kept = None
            if kept:
                everything = list(({r[0]: r for r in kept} | {r[0]: r for r in rows}).values())
            else:
                everything = rows
            try:
                self._cache.put_many(everything, lock_wait_s=self._lock_wait_s)
            except CacheLockedError:
                pass
            except CacheWriteError as exc:
                return _Outcome.REFUSED, 0, str(exc)
            else:
                if kept is not None:  # merged: a failed delete only means a second merge
                    with contextlib.suppress(OSError):
                        self._spill.clear()
                return _Outcome.COMMITTED, len(everything), ""
        try:
            self._spill.append(rows)
        except OSError as exc:
            return _Outcome.KEPT, 0, str(exc)
        return _Outcome.SPILLED, 0, ""

    def _report_lock(self, now: float) -> None:
        if self._locked_since is None:
            self._locked_since = now - self._lock_wait_s
        if now - self._warned_lock_at < LOCK_WARN_EVERY_S:
            return
        self._warned_lock_at = now
        where = self._spill.own_path
        kept = f"in {str(where)!r}" if where is not None else "in memory"
        self._warn(
            f"minimallm: the prompt cache {str(self._cache.path)!r} is locked: another "
            "process holds its write lock. Requests go on; their answers are kept "
            f"{kept} and written once the lock frees"
        )

    def _wake_waiters(self, count: int) -> None:
        for done in self._waiters[:count]:
            done.set()
        del self._waiters[:count]

    async def _final_commits(self) -> None:
        """Commit until a drain finds nothing new, then close the inbox in the same
        step (no checkpoint in between). Answers sent while a commit runs (senders
        blocked on a full buffer included) are written in the next round; every Flush
        already sent is answered; a send after the close fails at once
        (BrokenResourceError) instead of waiting on a writer that will never read it.
        Then, if rows are still spilled, keep trying the database for ``close_wait_s``.
        """
        for _ in range(FINAL_ROUNDS):
            self._drain()
            if not self._pending and not self._waiters:
                break
            if await self._step() is _Outcome.KEPT:
                self._drain()
                break
        else:  # still busy: take what came during the last round, then refuse more
            self._drain()
        self._inbox.close()  # discards nothing: the drain just emptied it
        await self._step()
        give_up = trio.current_time() + self._close_wait_s
        while self._spill.paths:
            self._next_try = -math.inf
            if await self._step() is not _Outcome.SPILLED:
                break
            if trio.current_time() >= give_up:
                where = self._spill.own_path or self._spill.paths[-1]
                self._warn(
                    f"minimallm: the prompt cache {str(self._cache.path)!r} is still "
                    "locked by another process; the answers not written yet are kept "
                    f"in {str(where)!r} and merged into the cache the next time it is "
                    "opened"
                )
                break
            await trio.sleep(min(self._retry_s, self._close_wait_s))
        if self._pending:  # locked, and the spill file could not be written either
            self._warn(
                f"minimallm: {len(self._pending):,} answers were not cached: the prompt "
                f"cache {str(self._cache.path)!r} stayed locked and no spill file could "
                "be written beside it"
            )
