"""Monitor: progress of one batch, told by events; heartbeat, stall warning, failures,
summary.

Batch workers post an :class:`ItemFinished` per item (``send_nowait`` into a bounded
buffer; when it is full they wait, which is the backpressure). The Monitor drains the
buffer in bulk, so at high rates it wakes once per burst, not once per item. It wakes on
its own at each heartbeat (absolute deadlines ``start + k·heartbeat_s``: no drift) and
when ``stall_s`` passed without a finished item; the stall warning explains itself
with a :class:`StallContext` it asks for at that moment.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import trio

from minimallm._config import BatchConfig
from minimallm._progress import (
    BatchTally,
    StallContext,
    format_failure,
    format_heartbeat,
    format_stall,
    format_summary,
)
from minimallm._types import MinimaLlmFailure

__all__ = ["EVENT_BUFFER", "CachedItems", "ItemFinished", "Monitor"]

EVENT_BUFFER = 1024
"""Events buffered between batch workers and the Monitor (bounded: backpressure)."""

ItemKind = Literal["ok", "cached", "failed", "none"]


@dataclass(frozen=True, slots=True)
class ItemFinished:
    """One item of the batch is over. Times are trio times (seconds); ``attempts`` is
    the number of HTTP sends (0 for a cache hit or when unknown)."""

    started_at: float
    finished_at: float
    kind: ItemKind
    attempts: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    failure: MinimaLlmFailure | None = None


@dataclass(frozen=True, slots=True)
class CachedItems:
    """``count`` items were answered from the cache in bulk at trio time ``at``."""

    count: int
    at: float


class Monitor:
    """Owns the batch's tally; writes progress lines through ``emit``."""

    __slots__ = (
        "_cfg",
        "_emit",
        "_finished",
        "_inbox",
        "_last_progress",
        "_printed",
        "_stall_context",
        "_start",
        "tally",
    )

    def __init__(
        self,
        cfg: BatchConfig,
        total: int,
        inbox: trio.MemoryReceiveChannel[ItemFinished | CachedItems],
        emit: Callable[[str], None],
        stall_context: Callable[[float], StallContext],
    ) -> None:
        self._cfg = cfg
        self._inbox = inbox
        self._emit = emit
        self._stall_context = stall_context
        self.tally = BatchTally(total)
        self._printed = 0
        self._finished = False
        self._start = 0.0
        self._last_progress = 0.0

    def __repr__(self) -> str:
        t = self.tally
        return f"<Monitor done={t.done}/{t.total} failed={t.failed} cached={t.cached}>"

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume events until the inbox closes (the batch calls :meth:`finish`)."""
        self._start = self._last_progress = trio.current_time()
        hb = self._cfg.heartbeat_s
        next_beat = self._start + hb if hb > 0 else math.inf
        next_stall = self._start + self._cfg.stall_s
        async with self._inbox:
            task_status.started()
            while True:
                with trio.move_on_at(min(next_beat, next_stall)):
                    try:
                        event = await self._inbox.receive()
                    except trio.EndOfChannel:
                        break
                    self._record(event)
                    self._drain()
                    next_stall = self._last_progress + self._cfg.stall_s
                    continue
                now = trio.current_time()
                if now >= next_beat:
                    self._drain()
                    self._emit(format_heartbeat(self.tally, now - self._start))
                    next_beat += hb * max(1, math.floor((now - next_beat) / hb) + 1)
                if now >= next_stall:
                    self._emit(format_stall(now - self._last_progress, self._stall_context(now)))
                    next_stall = now + self._cfg.stall_s

    def finish(self) -> None:
        """Print the summary once: at the end, on abort and on cancellation alike."""
        if self._finished:
            return
        self._finished = True
        self._drain()
        self._emit(format_summary(self.tally, trio.current_time() - self._start))

    def _drain(self) -> None:
        while True:
            try:
                event = self._inbox.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                return
            self._record(event)

    def _record(self, e: ItemFinished | CachedItems) -> None:
        t = self.tally
        if isinstance(e, CachedItems):
            t.done += e.count
            t.ok += e.count
            t.cached += e.count
            self._last_progress = max(self._last_progress, e.at)
            return
        t.done += 1
        t.sent += e.attempts
        t.retries += max(0, e.attempts - 1)
        self._last_progress = max(self._last_progress, e.finished_at)
        t.latency.add(e.finished_at - e.started_at)
        if e.prompt_tokens is not None or e.completion_tokens is not None:
            t.tokens_reported = True
            t.prompt_tokens += e.prompt_tokens or 0
            t.completion_tokens += e.completion_tokens or 0
        if e.kind == "ok":
            t.ok += 1
        elif e.kind == "cached":
            t.ok += 1
            t.cached += 1
        elif e.kind == "none":
            t.none += 1
        else:
            t.failed += 1
            if e.failure is not None and self._printed < self._cfg.print_first_failures:
                self._printed += 1
                self._emit(format_failure(self._printed, e.failure))
