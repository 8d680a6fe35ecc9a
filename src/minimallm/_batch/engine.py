"""The batch engine (trio): ``num_workers`` items in progress over a lazy input, a
Monitor, the failure budget, and one clear exception when the batch stops early.

Three limits stay independent: ``num_workers`` items in progress here,
MAX_OUTSTANDING HTTP attempts (the runtime's Limiter), RPM (its Pacer). Items are
taken from the input one at a time as others end, so the input may be a generator of a
million requests; each result goes to ``deliver(index, value)`` as soon as it is
ready, and nothing per item is kept after that; each finished item is counted in the
batch's tally, which the Monitor shows.

Where an item runs: a user's function in one of ``num_workers`` runner tasks; a
request (with a ``pool``) in the task of the Worker that takes it
(:class:`~minimallm.actors.messages.ItemJob`). Then the item that ends queues the
next one from the Worker's task, and a keeper task waits only when the input has none
ready (the window is full, the cache reader is behind). With the prompt cache, a
feeder reads the input ahead in chunks, answers hits in bulk and hands only misses on
to the items in progress. An optional
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

from collections.abc import Awaitable, Callable, Iterable
from functools import partial
from typing import Any, TypeAlias, TypeVar

import trio

from minimallm._batch.budget import FailureBudget, TokenBudget
from minimallm._batch.items import PROGRAMMING_ERRORS, ItemResult
from minimallm._batch.source import ItemSource, Taken, noted
from minimallm._config.settings import BatchConfig
from minimallm._errors import BackendClosedError, BatchAbortedError, TokenBudgetExceededError
from minimallm._progress import ProgressSink, ProgressTally
from minimallm._progress.calls import CallCounter
from minimallm.actors.messages import ItemJob
from minimallm.actors.monitor import EVENT_BUFFER, ItemFailed, Monitor, MonitorEvent

__all__ = ["LOOKUP_CHUNK", "Deliver", "Finish", "ItemFn", "Lookup", "Pool", "run_batch"]

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
hit)`` each, in order; a miss (``hit`` None) goes on to run as the item returned
(which may carry what the lookup learned, e.g. its key)."""

ItemFn: TypeAlias = Callable[
    [int, Any, trio.MemorySendChannel[MonitorEvent], Any, int], Awaitable[Any]
]
"""Runs one item: ``fn(index, item, events, worker, order)`` (what it returns goes to
the batch's ``finish``); ``events`` is the Monitor's inbox (the request path gives it
to its Workers, whose attempt reports go there); with a ``pool``, ``worker`` is the
Worker whose task runs the item and ``order`` the number the pool gave it (else None
and 0)."""

Pool: TypeAlias = Callable[[ItemJob], None]
"""Where a batch whose items the Workers run hands each item (to the runtime's job
queue; raises :class:`BackendClosedError` once the runtime stopped)."""

Finish: TypeAlias = Callable[[Any], "ItemResult[Any]"]
"""What an item's function returned, as the engine and the Monitor need it."""


ITEM_STOPS: tuple[type[BaseException], ...] = (*PROGRAMMING_ERRORS, BackendClosedError)
"""What an item may raise that stops its batch (anything else the item's own function
raises is its failure value, see ``_batch/items.py``)."""


class _Stop:
    """The first reason the batch stops (later ones are consequences); stopping cancels
    the batch's tasks and, through ``also``, its items in the Workers."""

    __slots__ = ("also", "error", "scope")

    def __init__(self, scope: trio.CancelScope, also: Callable[[], None]) -> None:
        self.scope = scope
        self.also = also
        self.error: BaseException | None = None

    def __call__(self, error: BaseException) -> None:
        if self.error is None:
            self.error = error
        self.scope.cancel()
        self.also()


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
    pool: Pool | None = None,
) -> FailureBudget:
    """Run every item (see the module docstring); returns the failure budget (its
    counts and the last failures). Raises one exception if the batch stops early.
    Each item runs as ``finish(await fn(index, item, events, worker, order))``: in one of
    ``num_workers`` runner tasks (``worker`` None), or, with a ``pool``, in the task of
    the Worker that takes it (:class:`~minimallm.actors.messages.ItemJob`; the batch
    queues the next item as each one ends, so no task wakes to hand items over).
    ``calls``: LM calls the items' own code makes, shown in the progress."""
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
    source = ItemSource(items, window)
    lanes = cfg.num_workers if total is None else min(cfg.num_workers, max(total, 1))

    def item_raised(stop: _Stop, exc: BaseException, index: int, item: Any) -> None:
        """Item ``index`` raised ``exc`` (one of :data:`ITEM_STOPS`): the batch stops."""
        if not isinstance(exc, BackendClosedError):
            exc = noted(exc, f"minimallm: raised while running item {describe(index, item)}")
        stop(exc)

    def complete(
        stop: _Stop, index: int, started_at: float, result: ItemResult[Any]
    ) -> ItemFailed | None:
        """An item ended: counted in the tally (a plain call, no message per item), in
        the budgets, delivered. Returns its ItemFailed if the Monitor's inbox was full
        (the caller waits to hand it over)."""
        at = now()
        value, kind, tries, sent, prompt, completion, failure, cached, reasoning, server = result
        item_finished(
            started_at, at, kind, tries, sent, prompt, completion, cached, reasoning, server
        )
        verdict = None
        late: ItemFailed | None = None
        if failure is not None:
            late = ItemFailed(at, failure)  # the Monitor shows the first ones
            try:
                events_send.send_nowait(late)
                late = None
            except trio.WouldBlock:
                pass
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
        return late

    async def runner(stop: _Stop) -> None:
        """Run items one after another (no coroutine per item): each as
        ``finish(await fn(index, item, events, None, 0))``, completed."""
        quick = window is None and source.misses is None  # taken without a coroutine
        while stop.error is None:
            taken = source.take(stop) if quick else await source.wait(stop)
            if taken is None:
                return
            if stop.error is not None:
                return
            index, item = taken
            started_at = began[index] = now()
            try:
                result = finish(await fn(index, item, events_send, None, 0))
            except ITEM_STOPS as exc:
                item_raised(stop, exc, index, item)
                return
            finally:
                del began[index]
            late = complete(stop, index, started_at, result)
            if late is not None:
                await events_send.send(late)

    # -- with a pool: the items run in the Workers' tasks ------------------------------
    queued: dict[int, ItemJob] = {}  # items handed to the pool and not ended yet
    drained = trio.Event()  # no item in the pool, and none will go (the end, or a stop)
    ending = False  # the batch is ending: no more items go to the pool
    wanted = trio.Event()  # the input had no item ready: the keeper waits for one
    awaited = 0  # 1 while the keeper waits for an item: its place among the num_workers

    def drain_if_done() -> None:
        """The batch is drained once it is ending and its last item in the pool ended."""
        if ending and not queued:
            drained.set()

    def cancel_queued() -> None:
        """(stopping) Cancel every item in the pool: a queued one ends now, a running
        one as its cancellation reaches it."""
        nonlocal ending
        ending = True
        for index, job in list(queued.items()):
            job.cancel()
            if job.scope is None:  # not started: no Worker will run it
                del queued[index]
                del began[index]
        drain_if_done()

    async def run_in_worker(stop: _Stop, index: int, item: Any, worker: Any, order: int) -> None:
        """One item, in the task of the Worker that took it. Anything the door itself
        raises (other than a closed backend) is the Worker failing: the runtime tells
        the batch. What the batch does with the result is the batch's: an error there
        stops the batch, not the Worker."""
        try:
            try:
                traced = await fn(index, item, events_send, worker, order)
            except ITEM_STOPS as exc:
                item_raised(stop, exc, index, item)
                return
            try:
                late = complete(stop, index, began[index], finish(traced))
                if late is not None:
                    await events_send.send(late)
            except Exception as exc:
                stop(noted(exc, "minimallm: raised by the batch's item runner"))
        finally:  # ended (after its failure reached the Monitor: the batch may end now)
            del began[index]
            del queued[index]
            drain_if_done()
        refill(stop)

    def failed_in_pool(stop: _Stop, index: int, error: BaseException) -> None:
        """The runtime stopped before or while running item ``index``."""
        if queued.pop(index, None) is not None:
            began.pop(index, None)
        stop(error)  # (the batch is ending now)
        drain_if_done()

    def launch(stop: _Stop, taken: Taken) -> None:
        """Hand item ``taken`` to the pool."""
        assert pool is not None
        index, item = taken
        began[index] = now()
        job = queued[index] = ItemJob(
            partial(run_in_worker, stop, index, item), partial(failed_in_pool, stop, index)
        )
        try:
            pool(job)
        except BackendClosedError as exc:
            failed_in_pool(stop, index, exc)

    def refill(stop: _Stop) -> bool:
        """Hand items to the pool while fewer than ``num_workers`` are in it and the
        input has one ready; True if it had none ready (the keeper is told)."""
        nonlocal ending
        while not ending and len(queued) + awaited < lanes:
            taken = source.ready(stop)
            if taken is False:
                wanted.set()
                return True
            if taken is None:
                ending = True
                break
            launch(stop, taken)
        drain_if_done()
        return False

    async def keeper(stop: _Stop) -> None:
        """Fills the pool at the start, and whenever the input had no item ready (the
        window is full, or the cache reader is behind): waits for one."""
        nonlocal wanted, ending, awaited
        while not ending:
            wanted = trio.Event()
            if not refill(stop):
                await wanted.wait()  # the pool is full: the items that end refill it
                continue
            awaited = 1  # its item's place is kept meanwhile
            try:
                taken = await source.wait(stop)
            finally:
                awaited = 0
            if taken is None:
                ending = True
                drain_if_done()
                return
            launch(stop, taken)

    async def feeder(stop: _Stop, misses: trio.MemorySendChannel[Taken]) -> None:
        assert lookup is not None
        async with misses:
            while True:
                chunk: list[Taken] = []
                while len(chunk) < LOOKUP_CHUNK:
                    taken = await source.next(stop)
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
            stop(noted(exc, f"minimallm: raised by the batch's {what}"))

    async def monitor_task(stop: _Stop, *, task_status: trio.TaskStatus[None]) -> None:
        try:
            await monitor.run(task_status=task_status)
        except (trio.Cancelled, KeyboardInterrupt):
            raise
        except BaseException as exc:
            stop(noted(exc, "minimallm: raised while showing the batch's progress"))

    try:
        async with trio.open_nursery() as batch:
            stop = _Stop(batch.cancel_scope, cancel_queued)
            await batch.start(monitor_task, stop)
            async with trio.open_nursery() as runners:
                if lookup is not None:
                    misses_send, source.misses = trio.open_memory_channel[Taken](cfg.num_workers)
                    runners.start_soon(guarded, stop, "cache reader", feeder, misses_send)
                if pool is not None:
                    runners.start_soon(guarded, stop, "item feeder", keeper)
                    await drained.wait()
                    runners.cancel_scope.cancel()  # the keeper (the cache reader has ended)
                else:
                    for _ in range(lanes):
                        runners.start_soon(guarded, stop, "item runner", runner)
            await events_send.aclose()  # the Monitor shows the summary and ends
    finally:
        if queued:  # cancelled from outside, or stopped: the Workers let go of its items
            cancel_queued()
            with trio.CancelScope(shield=True):
                await drained.wait()
    if stop.error is not None:
        raise stop.error
    return budget
