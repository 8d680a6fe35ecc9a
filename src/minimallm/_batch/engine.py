"""The batch engine (trio): ``num_workers`` item runners over a lazy input, a Monitor,
the failure budget, and one clear exception when the batch stops early.

Three limits stay independent: ``num_workers`` items in progress here,
MAX_OUTSTANDING HTTP attempts (the runtime's Limiter), RPM (its Pacer). Items are
taken from the input one at a time as runners free up, so the input may be a generator
of a million requests; each result goes to ``deliver(index, value)`` as soon as it is
ready, and nothing per item is kept after that; each finished item is counted in the
batch's tally, which the Monitor shows. With the prompt cache, a feeder reads the input
ahead in chunks, answers hits in bulk and hands only misses to the runners. An optional
``window`` semaphore bounds how far the input is read ahead of what the consumer has
taken (a stream's: its reorder buffer and its channel).

How a batch ends, always as one exception (never an ExceptionGroup):

- the failure budget or "all alike" (:mod:`._batch.budget`): :class:`BatchAbortedError`;
- ``max_total_tokens`` used (:mod:`._batch.budget`): :class:`TokenBudgetExceededError`;
- a programming error raised by an item's own function (TypeError …): that exception,
  with a note naming the item;
- the backend closed: :class:`BackendClosedError`;
- the input iterable or a progress callback raised: that exception, with a note.

In every case the in-flight work is cancelled at once (the Workers close half-used
connections), and every result delivered before stays delivered.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any, TypeAlias, TypeVar

import trio

from minimallm._batch.budget import FailureBudget, TokenBudget
from minimallm._batch.items import PROGRAMMING_ERRORS, ItemResult
from minimallm._config.settings import BatchConfig
from minimallm._errors import BackendClosedError, BatchAbortedError, TokenBudgetExceededError
from minimallm._progress import ProgressSink, ProgressTally
from minimallm._progress.calls import CallCounter
from minimallm.actors.monitor import EVENT_BUFFER, ItemFailed, Monitor, MonitorEvent

__all__ = ["LOOKUP_CHUNK", "Deliver", "Finish", "ItemFn", "Lookup", "run_batch"]

T = TypeVar("T")
R = TypeVar("R")

LOOKUP_CHUNK = 512
"""Items asked of the cache per thread hop when a batch starts from the cache."""

Deliver: TypeAlias = Callable[[int, Any], None]
"""Where each item's value goes, as soon as it is ready: ``deliver(index, value)``
(never waits: a consumer that must hold the batch back does it with the ``window``)."""

Lookup: TypeAlias = Callable[
    [list[tuple[int, Any]]], Awaitable[list[tuple[int, Any, "ItemResult[Any] | None"]]]
]
"""The prompt cache, in bulk: for a chunk of ``(index, item)`` pairs, ``(index, item,
hit)`` each, in order; a miss (``hit`` None) goes to the runners as the item returned
(which may carry what the lookup learned, e.g. its key)."""

ItemFn: TypeAlias = Callable[[int, Any, trio.MemorySendChannel[MonitorEvent]], Awaitable[Any]]
"""Runs one item: ``fn(index, item, events)`` (what it returns goes to the batch's
``finish``); ``events`` is the Monitor's inbox (the request path gives it to its
Workers, whose attempt reports go there)."""

Finish: TypeAlias = Callable[[Any], "ItemResult[Any]"]
"""What an item's function returned, as the engine and the Monitor need it."""


class _Stop:
    """The first reason the batch stops (later ones are consequences)."""

    __slots__ = ("error", "scope")

    def __init__(self, scope: trio.CancelScope) -> None:
        self.scope = scope
        self.error: BaseException | None = None

    def __call__(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.scope.cancel()


def _noted(exc: BaseException, note: str) -> BaseException:
    exc.add_note(note)
    return exc


async def run_batch(
    items: Iterable[Any],
    fn: ItemFn,
    finish: Finish,
    cfg: BatchConfig,
    *,
    deliver: Deliver,
    sink: ProgressSink,
    total: int | None,
    describe: Callable[[int, Any], str],
    runtime: Callable[[], Any] | None = None,
    lookup: Lookup | None = None,
    window: trio.Semaphore | None = None,
    calls: CallCounter | None = None,
) -> FailureBudget:
    """Run every item (see the module docstring); returns the failure budget (its
    counts and the last failures). Raises one exception if the batch stops early.
    Each item runs as ``finish(await fn(index, item, events))``. ``calls``: LM calls
    the items' own code makes, shown in the progress."""
    budget = FailureBudget(cfg.max_failures, cfg.keep_failure_summaries)
    tokens = TokenBudget(cfg.max_total_tokens, calls)
    events_send, events_recv = trio.open_memory_channel[MonitorEvent](EVENT_BUFFER)
    began: dict[int, float] = {}  # items in progress: index -> when it began
    now = trio.lowlevel.current_clock().current_time  # trio.current_time(), two calls fewer

    def in_progress() -> tuple[int, float | None]:
        return len(began), min(began.values(), default=None)

    # the batch's record of finished items, written as each ends; the Monitor shows it
    tally = ProgressTally(total, now())
    item_finished = tally.item_finished
    monitor = Monitor(cfg, tally, events_recv, sink, runtime, calls, in_progress)
    source: Iterator[tuple[int, Any]] = enumerate(items)
    exhausted = False

    async def event(e: MonitorEvent) -> None:
        try:
            events_send.send_nowait(e)
        except trio.WouldBlock:
            await events_send.send(e)

    def take_item(stop: _Stop) -> tuple[int, Any] | None:
        """The next input item, or None at the end (or when the input raised)."""
        nonlocal exhausted
        if exhausted:
            return None
        try:
            return next(source)
        except StopIteration:
            exhausted = True
        except Exception as exc:
            exhausted = True
            stop(_noted(exc, "minimallm: raised by the batch's input while taking an item"))
        return None

    async def next_item(stop: _Stop) -> tuple[int, Any] | None:
        """:func:`take_item`, within the ``window`` (when there is one)."""
        if window is None:
            return take_item(stop)
        if exhausted:
            return None
        try:
            window.acquire_nowait()
        except trio.WouldBlock:
            await window.acquire()
        taken = take_item(stop)
        if taken is None:
            window.release()
        return taken

    async def runner(
        stop: _Stop, misses: trio.MemoryReceiveChannel[tuple[int, Any]] | None
    ) -> None:
        """Run items one after another (no coroutine per item): each as
        ``finish(await fn(index, item, events))``, counted in the tally, delivered."""
        while stop.error is None:
            if misses is None:
                # no window: take the item without a coroutine (one fewer per item)
                taken = take_item(stop) if window is None else await next_item(stop)
                if taken is None:
                    return
            else:
                try:
                    taken = await misses.receive()
                except trio.EndOfChannel:
                    return
            if stop.error is not None:
                return
            index, item = taken
            started_at = began[index] = now()
            try:
                result = finish(await fn(index, item, events_send))
            except PROGRAMMING_ERRORS as exc:
                stop(_noted(exc, f"minimallm: raised while running item {describe(index, item)}"))
                return
            except BackendClosedError as exc:
                stop(exc)
                return
            finally:
                del began[index]
            # counted in the batch's tally at once: a plain call, no message per item
            at = now()
            value, kind, tries, sent, prompt, completion, failure, cached, reasoning, server = (
                result
            )
            item_finished(
                started_at, at, kind, tries, sent, prompt, completion, cached, reasoning, server
            )
            verdict = None
            if failure is not None:
                await event(ItemFailed(at, failure))  # the Monitor shows the first ones
                verdict = budget.record(failure)
            elif kind == "ok" or kind == "cached":
                budget.success()
            spent = (
                None
                if tokens.max_total_tokens is None  # no budget: nothing to count against
                else tokens.spend(prompt, completion)
            )
            deliver(index, value)
            if verdict is not None:
                stop(BatchAbortedError(verdict, [], list(budget.recent)))
            elif spent is not None:
                stop(TokenBudgetExceededError(spent, [], list(budget.recent), tokens.used))

    async def feeder(stop: _Stop, misses: trio.MemorySendChannel[tuple[int, Any]]) -> None:
        assert lookup is not None
        async with misses:
            while True:
                chunk: list[tuple[int, Any]] = []
                while len(chunk) < LOOKUP_CHUNK:
                    taken = await next_item(stop)
                    if taken is None:
                        break
                    chunk.append(taken)
                if not chunk:
                    return
                looked = await lookup(chunk)
                hits = sum(1 for _, _, hit in looked if hit is not None)
                if hits:
                    tally.cached_in_bulk(hits, now())
                for index, item, hit in looked:
                    if hit is None:
                        await misses.send((index, item))
                    else:
                        budget.success()
                        deliver(index, hit.value)

    async def guarded(
        stop: _Stop, what: str, run: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        """Run a task of the batch; anything it raises stops the batch (no group)."""
        try:
            await run(stop, *args)
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except BackendClosedError as exc:  # e.g. the feeder's cache read during aclose()
            stop(exc)
        except BaseException as exc:  # a bug, or the user's progress callback
            stop(_noted(exc, f"minimallm: raised by the batch's {what}"))

    async def monitor_task(stop: _Stop, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await monitor.run(task_status=task_status)
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except BaseException as exc:
            stop(_noted(exc, "minimallm: raised while showing the batch's progress"))

    async with trio.open_nursery() as batch:
        stop = _Stop(batch.cancel_scope)
        await batch.start(monitor_task, stop)
        async with trio.open_nursery() as runners:
            misses_recv: trio.MemoryReceiveChannel[tuple[int, Any]] | None = None
            if lookup is not None:
                misses_send, misses_recv = trio.open_memory_channel[tuple[int, Any]](
                    cfg.num_workers
                )
                runners.start_soon(guarded, stop, "cache reader", feeder, misses_send)
            workers = cfg.num_workers if total is None else min(cfg.num_workers, max(total, 1))
            for _ in range(workers):
                runners.start_soon(guarded, stop, "item runner", runner, misses_recv)
        await events_send.aclose()  # the Monitor shows the summary and ends
    if stop.error is not None:
        raise stop.error
    return budget
