"""Monitor: one batch's progress — heartbeat, what holds the client back, stalls, the
first failures, the summary — told by events, shown through a sink.

Inbox (``send_nowait`` into a bounded buffer, drained many per wake-up):

- from the batch's item runners: :class:`ItemFinished` (with when the item began, and
  the server's time for the attempt that answered it), :class:`CachedItems` (hits
  answered in bulk);
- from the Workers, for attempts made for this batch that did not answer their
  request (refused, failed, no answer): :class:`~minimallm.actors.messages.AttemptReport`
  (retries are counted as they happen, not when their item ends).

Which items are in progress (how many, since when) is the engine's own record: the
Monitor reads it when it shows progress, through the ``in_progress`` callable it was
given, as it reads the runtime's ``statistics()`` for what binds.

It wakes on its own for the sink's ticks (absolute deadlines ``start + k * tick_s``:
no drift) and when ``stall_s`` passed without a finished item. What binds comes from
the runtime's ``statistics()`` snapshot at that moment. When the inbox closes (the
batch ended) or the Monitor is cancelled (abort, Ctrl-C), it shows the summary itself:
nobody touches its state from outside.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

import trio

from minimallm._config.settings import BatchConfig
from minimallm._errors import MinimaLlmError
from minimallm._progress import ProgressSink, ProgressTally
from minimallm._progress.calls import CallCounter
from minimallm._types import MinimaLlmFailure
from minimallm.actors._inbox import receive_all
from minimallm.actors.messages import AttemptReport

if TYPE_CHECKING:  # the batch's own type; _batch.items imports ItemKind from here
    from minimallm._batch.items import ItemResult

__all__ = ["EVENT_BUFFER", "CachedItems", "InProgress", "ItemFinished", "ItemKind", "Monitor"]

EVENT_BUFFER = 8192
"""Events buffered for the Monitor (bounded: item runners wait when it is full)."""

ItemKind = Literal["ok", "cached", "failed", "none"]


class MonitorStatistics(NamedTuple):
    """Items done, of ``total`` (None: unknown), and failures shown in full so far."""

    done: int
    total: int | None
    failures_shown: int


InProgress = Callable[[], tuple[int, float | None]]
"""The engine's items in progress: how many, and when the oldest began (None: none)."""


class ItemFinished(NamedTuple):
    """Item ``item`` (its index in the batch), begun at ``started_at``, ended at ``at``
    (trio time, seconds) with ``result``: its kind, attempts, tokens, failure, and for
    an answer from the server the server's time for the attempt that answered
    (``server_s``; that attempt was not reported on its own)."""

    item: int
    started_at: float
    at: float
    result: ItemResult[Any]


class CachedItems(NamedTuple):
    """``hits`` items were answered from the cache in bulk at ``at``."""

    hits: int
    at: float


MonitorEvent = ItemFinished | CachedItems | AttemptReport


class Monitor:
    """Actor owning one batch's tally."""

    __slots__ = (
        "_calls",
        "_cfg",
        "_in_progress",
        "_inbox",
        "_printed",
        "_runtime",
        "_sink",
        "_tally",
        "_total",
    )

    def __init__(
        self,
        cfg: BatchConfig,
        total: int | None,
        inbox: trio.MemoryReceiveChannel[MonitorEvent],
        sink: ProgressSink,
        runtime: Callable[[], Any] | None = None,
        calls: CallCounter | None = None,
        in_progress: InProgress | None = None,
    ) -> None:
        self._cfg = cfg
        self._total = total
        self._inbox = inbox
        self._sink = sink
        self._runtime = runtime  # () -> RuntimeStatistics: what binds, HTTP in flight
        self._calls = calls  # LM calls the items' own code makes (run_dspy_batch)
        self._in_progress = in_progress
        self._tally: ProgressTally | None = None
        self._printed = 0

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Monitor done={s.done}/{s.total}>"

    def statistics(self) -> MonitorStatistics:
        """A frozen snapshot: items done of the total (None: unknown), failures shown."""
        t = self._tally
        return MonitorStatistics(0 if t is None else t.done, self._total, self._printed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume events until the inbox closes; show the summary on the way out."""
        start = trio.current_time()
        self._tally = ProgressTally(self._total, start)
        tick_s = self._sink.tick_s
        next_tick = start + tick_s if tick_s > 0 else math.inf
        last_progress = start
        next_stall = start + self._cfg.stall_s
        inbox = self._inbox
        task_status.started()
        try:
            while True:
                # One cancel scope per deadline, not per wake-up (entering and leaving
                # one costs ~8 µs, and the Monitor wakes every few items): the deadline
                # stays as it was when the scope opened; reaching it, the Monitor looks
                # at the time and decides (a stall deadline that progress moved on is
                # set again from the last progress).
                with trio.move_on_at(min(next_tick, next_stall)):
                    while True:
                        burst = await receive_all(inbox)
                        if burst is None:
                            return
                        if self._record_all(burst):
                            last_progress = trio.current_time()
                now = trio.current_time()
                if now >= next_tick:
                    self._drain()
                    self._show("tick", now)
                    next_tick += tick_s * max(1, math.floor((now - next_tick) / tick_s) + 1)
                if now >= next_stall:
                    if now - last_progress >= self._cfg.stall_s:
                        self._show("stall", now, stalled_s=now - last_progress)
                        next_stall = now + self._cfg.stall_s
                    else:
                        next_stall = last_progress + self._cfg.stall_s
        finally:
            self._drain()
            self._show("done", trio.current_time())
            self._sink.close()

    def _drain(self) -> None:
        waiting: list[MonitorEvent] = []
        while True:
            try:
                waiting.append(self._inbox.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
        self._record_all(waiting)

    def _record_all(self, burst: list[MonitorEvent]) -> bool:
        """Fold events into the tally, in order; True when an item finished. Per item
        (the hot path): the event unpacked at once (a NamedTuple's field costs a lookup
        each), the tally's method read once per burst."""
        tally = self._tally
        assert tally is not None
        item_finished = tally.item_finished
        progressed = False
        for e in burst:
            if type(e) is not ItemFinished:
                if isinstance(e, AttemptReport):
                    tally.attempt_failed(e.sent_at, e.done_at, e.answered)
                else:
                    assert isinstance(e, CachedItems)
                    tally.cached_in_bulk(e.hits)
                    progressed = True
                continue
            _, started, at, r = e
            _, kind, tries, sent, p, c, failure, ca, re, server = r  # ItemResult's order
            item_finished(started, at, kind, tries, sent, p, c, ca, re, server)
            progressed = True
            if failure is not None and self._printed < self._cfg.print_first_failures:
                self._printed += 1
                self._show("failure", at, failure=failure)
        return progressed

    def _show(
        self,
        kind: Literal["tick", "failure", "stall", "done"],
        now: float,
        *,
        failure: MinimaLlmFailure | None = None,
        stalled_s: float | None = None,
    ) -> None:
        tally = self._tally
        assert tally is not None
        binding: str | None = None
        in_flight: int | None = None
        in_progress, oldest = (0, None) if self._in_progress is None else self._in_progress()
        if self._runtime is not None and kind != "failure":
            try:
                stats = self._runtime()
            except MinimaLlmError:  # the runtime already stopped: nothing holds anything back
                stats = None
            if stats is not None:
                binding = None if stats.binding is None else stats.binding.text
                in_flight = stats.in_flight
        self._sink.show(
            tally.snapshot(
                kind,
                now,
                calls=None if self._calls is None else self._calls.counts(),
                binding=binding,
                http_in_flight=in_flight,
                failure=failure,
                failure_number=self._printed,
                stalled_s=stalled_s,
                in_progress=in_progress,
                oldest_start=oldest,
            )
        )
