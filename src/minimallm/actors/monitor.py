"""Monitor: one batch's progress — heartbeat, what holds the client back, stalls, the
first failures, the summary — told by events, shown through a sink.

What happened to the batch's items is the engine's own record, written as it happens
with no message: its item runners count each finished item in the batch's
:class:`~minimallm._progress.ProgressTally` (a plain call; the cache reader counts hits
answered in bulk there too), and which items are in progress (how many, since when) the
Monitor reads through the ``in_progress`` callable it was given, as it reads the
runtime's ``statistics()`` for what binds. Only what must be told goes to its inbox
(``send_nowait`` into a bounded buffer, drained many per wake-up):

- from the item runners: :class:`ItemFailed` (the first failures are shown as they
  happen);
- from the Workers, for attempts made for this batch that did not answer their
  request (refused, failed, no answer): :class:`~minimallm.actors.messages.AttemptReport`
  (retries are counted as they happen, not when their item ends), folded into the tally.

It wakes on its own for the sink's ticks (absolute deadlines ``start + k * tick_s``:
no drift) and when ``stall_s`` passed without a finished item (the tally's
``last_done_at``). What binds comes from the runtime's ``statistics()`` snapshot at that
moment. When the inbox closes (the batch ended) or the Monitor is cancelled (abort,
Ctrl-C), it shows the summary itself.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import trio

from minimallm._config.settings import BatchConfig
from minimallm._errors import MinimaLlmError
from minimallm._progress import ProgressSink, ProgressTally
from minimallm._progress.calls import CallCounter
from minimallm._types import MinimaLlmFailure
from minimallm.actors._inbox import receive_all
from minimallm.actors.messages import AttemptReport

__all__ = ["EVENT_BUFFER", "InProgress", "ItemFailed", "ItemKind", "Monitor"]

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


class ItemFailed(NamedTuple):
    """An item ended at ``at`` (trio time, seconds) with ``failure`` (already counted
    in the tally)."""

    at: float
    failure: MinimaLlmFailure


MonitorEvent = ItemFailed | AttemptReport


class Monitor:
    """Actor showing one batch's tally."""

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
        tally: ProgressTally,
        inbox: trio.MemoryReceiveChannel[MonitorEvent],
        sink: ProgressSink,
        runtime: Callable[[], Any] | None = None,
        calls: CallCounter | None = None,
        in_progress: InProgress | None = None,
    ) -> None:
        self._cfg = cfg
        self._tally = tally  # the batch's record (see the module docstring)
        self._inbox = inbox
        self._sink = sink
        self._runtime = runtime  # () -> RuntimeStatistics: what binds, HTTP in flight
        self._calls = calls  # LM calls the items' own code makes (run_dspy_batch)
        self._in_progress = in_progress
        self._printed = 0

    def __repr__(self) -> str:
        s = self.statistics()
        return f"<Monitor done={s.done}/{s.total}>"

    def statistics(self) -> MonitorStatistics:
        """A frozen snapshot: items done of the total (None: unknown), failures shown."""
        t = self._tally
        return MonitorStatistics(t.done, t.total, self._printed)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Consume events until the inbox closes; show the summary on the way out."""
        tally = self._tally
        start = tally.start
        tick_s = self._sink.tick_s
        next_tick = start + tick_s if tick_s > 0 else math.inf
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
                        self._record_all(burst)
                now = trio.current_time()
                if now >= next_tick:
                    self._drain()
                    self._show("tick", now)
                    next_tick += tick_s * max(1, math.floor((now - next_tick) / tick_s) + 1)
                if now >= next_stall:
                    last_progress = tally.last_done_at
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

    def _record_all(self, burst: list[MonitorEvent]) -> None:
        """Fold the Workers' reports into the tally and show the first failures, in
        order."""
        tally = self._tally
        for e in burst:
            if type(e) is ItemFailed:
                if self._printed < self._cfg.print_first_failures:
                    self._printed += 1
                    self._show("failure", e.at, failure=e.failure)
            else:
                assert isinstance(e, AttemptReport)
                tally.attempt_failed(e.sent_at, e.done_at, e.answered)

    def _show(
        self,
        kind: Literal["tick", "failure", "stall", "done"],
        now: float,
        *,
        failure: MinimaLlmFailure | None = None,
        stalled_s: float | None = None,
    ) -> None:
        tally = self._tally
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
