"""CacheWriter: batches answers into SQLite transactions, off the trio thread.

Answers arrive on a channel (``send_nowait`` into a bounded buffer; a full buffer
makes the sender wait, which is the backpressure). The writer commits when it holds
``max_rows`` rows or the oldest has waited ``max_delay_s`` seconds, in a worker
thread, so SQLite never blocks the event loop. A :class:`Flush` message commits at
once and answers when done (batches flush when they end). On cancellation — close,
abort, Ctrl-C — whatever is buffered or still in the channel is written in a
shielded final commit: nothing paid for is lost on an orderly stop. Then the inbox is
closed, so a Flush sent to a writer that has stopped fails at once
(``BrokenResourceError``) and never waits. A SIGKILL loses
at most the rows younger than ``max_delay_s`` (documented in the README). The writer
closes the store after its final commit.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import trio

from minimallm._cache.store import CacheWriteError, PromptCache, StoreRow

__all__ = ["CacheRow", "CacheWriter", "CacheWriterStatistics", "Flush"]


FINAL_ROUNDS = 100
"""Commits a stopping writer makes while answers keep arriving before it refuses more
(answers still in flight when a backend closes; a bound, so a stop always ends)."""


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
    """Answers waiting for the next commit, and answers written so far."""

    pending: int
    written: int


@dataclass(frozen=True, slots=True)
class Flush:
    """Commit everything buffered now; ``done`` is set once every row sent before it is
    on disk (or the store refused it, which the writer reports as a warning)."""

    done: trio.Event


class CacheWriter:
    """Owns the pending rows; commits them in batches."""

    __slots__ = (
        "_cache",
        "_inbox",
        "_max_delay_s",
        "_max_rows",
        "_pending",
        "_warn",
        "_warned",
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
    ) -> None:
        self._cache = cache
        self._inbox = inbox
        self._warn = warn
        self._max_rows = max_rows
        self._max_delay_s = max_delay_s
        self._pending: dict[str, StoreRow] = {}
        self._warned = False
        self._written = 0

    def __repr__(self) -> str:
        return f"<CacheWriter pending={len(self._pending)} written={self._written}>"

    def statistics(self) -> CacheWriterStatistics:
        """A frozen snapshot: answers waiting for a commit, answers written so far."""
        return CacheWriterStatistics(len(self._pending), self._written)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Collect and commit until cancelled or the inbox closes; then commit the rest."""
        waiters: list[trio.Event] = []
        try:
            task_status.started()
            deadline = math.inf
            while True:
                with trio.move_on_at(deadline) as timer:
                    try:
                        message = await self._inbox.receive()
                    except trio.EndOfChannel:
                        break
                if timer.cancelled_caught:  # the oldest row has waited max_delay_s
                    await self._commit(waiters)
                    deadline = math.inf
                    continue
                self._absorb(message, waiters)
                self._drain(waiters)
                if waiters or len(self._pending) >= self._max_rows:
                    await self._commit(waiters)
                    deadline = math.inf
                elif deadline == math.inf:
                    deadline = trio.current_time() + self._max_delay_s
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await self._final_commits(waiters)
                finally:
                    # Even if a commit raised (a bug: the error propagates from here),
                    # nobody may wait on this writer any more.
                    self._inbox.close()
                    for done in waiters:
                        done.set()
                    # The writer stops last among the cache's users: it closes the store.
                    await trio.to_thread.run_sync(self._cache.close)

    async def _final_commits(self, waiters: list[trio.Event]) -> None:
        """Commit until a drain finds nothing new, then close the inbox in the same
        step (no checkpoint in between). Answers sent while a commit runs (senders
        blocked on a full buffer included) are written in the next round; every Flush
        already sent is answered; a send after the close fails at once
        (BrokenResourceError) instead of waiting on a writer that will never read it.
        """
        for _ in range(FINAL_ROUNDS):
            self._drain(waiters)
            if not self._pending and not waiters:
                break
            await self._commit(waiters)
        else:  # still busy: take what came during the last round, then refuse more
            self._drain(waiters)
        self._inbox.close()  # discards nothing: the drain just emptied it
        await self._commit(waiters)

    def _absorb(self, message: CacheRow | Flush, waiters: list[trio.Event]) -> None:
        if isinstance(message, Flush):
            waiters.append(message.done)
        else:
            m = message
            self._pending[m.key] = StoreRow(m.key, m.text, m.raw_json, m.model, m.canonical)

    def _drain(self, waiters: list[trio.Event]) -> None:
        while True:
            try:
                message = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            self._absorb(message, waiters)

    async def _commit(self, waiters: list[trio.Event]) -> None:
        """Write the pending rows in one transaction (in a thread), then wake flushers.

        Shielded: a cancel already pending would make the thread hop raise before the
        thread starts, and a commit that did not happen must not wake a flusher. (Once
        started, the thread cannot be interrupted anyway, so the shield adds no delay.)
        Rows leave ``_pending`` only when written or refused by the store (reported by
        a warning, once); the flushers are woken after that, never before.
        """
        if self._pending:
            rows = list(self._pending.values())
            try:
                with trio.CancelScope(shield=True):
                    await trio.to_thread.run_sync(self._cache.put_many, rows)
                self._written += len(rows)
            except CacheWriteError as exc:
                if not self._warned:
                    self._warned = True
                    self._warn(f"minimallm: answers are not being cached: {exc}")
            # nothing else touches _pending while this task waits for the thread
            self._pending.clear()
        for done in waiters:
            done.set()
        waiters.clear()
