"""The batch engine (trio): num_workers tasks pull items lazily, a Monitor reports,
a failure budget aborts.

Three limits stay independent: ``num_workers`` items in progress here,
MAX_OUTSTANDING HTTP attempts in the runtime's Limiter, RPM in its Pacer.
Results are index-aligned with the input whatever finishes first; an item's ``None``
stays in place. The engine runs natively under trio; the asyncio and sync entry
points reach it through the bridge (one crossing per batch).
"""

from __future__ import annotations

import logging
import sys
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TextIO, TypeAlias, TypeVar

import trio

from minimallm import _bridge
from minimallm._config import BatchConfig
from minimallm._context import reporting_cached
from minimallm._errors import BatchAbortedError
from minimallm._progress import StallContext, failure_summary
from minimallm._types import MinimaLlmFailure, MinimaLlmResponse
from minimallm.actors.monitor import EVENT_BUFFER, CachedItems, ItemFinished, ItemKind, Monitor

__all__ = [
    "PROGRAMMING_ERRORS",
    "FailureBudget",
    "ItemResult",
    "Progress",
    "callable_item",
    "exception_item",
    "make_emitter",
    "response_item",
    "run_batch",
    "run_batched_callable",
    "value_item",
]

T = TypeVar("T")
R = TypeVar("R")

Progress: TypeAlias = TextIO | logging.Logger | Callable[[str], None] | None
"""Where progress lines go: a stream, a logger (INFO), a callable, or None for stderr."""

PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    NameError,
    AttributeError,
    SyntaxError,
    ImportError,
)
"""Raised by an item's function, these are bugs, not failures: the batch stops at
once and re-raises them instead of counting them toward ``max_failures``."""


def make_emitter(progress: Progress) -> Callable[[str], None]:
    """A line writer for ``progress`` (stderr, looked up at write time, by default)."""
    if progress is None:
        return lambda line: print(line, file=sys.stderr, flush=True)
    if isinstance(progress, logging.Logger):
        return progress.info
    write = getattr(progress, "write", None)
    if write is not None:
        stream = progress

        def to_stream(line: str) -> None:
            stream.write(line + "\n")  # type: ignore[union-attr]
            stream.flush()  # type: ignore[union-attr]

        return to_stream
    if callable(progress):
        return progress
    raise TypeError(
        f"progress must be a text stream, a logging.Logger, a callable or None, "
        f"not {type(progress).__name__}"
    )


@dataclass(frozen=True, slots=True)
class ItemResult(Generic[R]):
    """What one item produced, with what the Monitor needs to know about it."""

    value: R | None
    kind: ItemKind
    attempts: int = 0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    failure: MinimaLlmFailure | None = None


class FailureBudget:
    """Counts failures; exceeded when there are more than ``max_failures``
    (None: never). Keeps the last ``keep`` failures and their summaries for the abort
    (message and ``BatchAbortedError.failures``)."""

    __slots__ = ("count", "failures", "max_failures", "recent")

    def __init__(self, max_failures: int | None, keep: int) -> None:
        self.max_failures = max_failures
        self.count = 0
        self.recent: deque[str] = deque(maxlen=max(keep, 1))
        self.failures: deque[MinimaLlmFailure] = deque(maxlen=keep)

    def __repr__(self) -> str:
        return f"<FailureBudget {self.count}/{self.max_failures}>"

    def record(self, failure: MinimaLlmFailure) -> bool:
        """Count one failure; True when the budget is now exceeded."""
        self.count += 1
        self.recent.append(failure_summary(failure))
        self.failures.append(failure)
        return self.max_failures is not None and self.count > self.max_failures

    def abort_message(self) -> str:
        """``Aborting batch: N failures …`` followed by the recent failures."""
        lines = [
            f"Aborting batch: {self.count} failures (max_failures={self.max_failures}). "
            f"Recent failures ({len(self.recent)}):"
        ]
        lines.extend(f"  - {summary}" for summary in self.recent)
        return "\n".join(lines)


LOOKUP_CHUNK = 512
"""Items asked of the cache per thread hop when a batch starts from the cache."""

Lookup: TypeAlias = Callable[[list[int]], Awaitable[dict[int, "ItemResult[R]"]]]
"""Hits by index for a chunk of indices (the prompt cache, in bulk)."""

StallInfo: TypeAlias = Callable[[], tuple[int | None, int | None, float, int]]
"""Runtime view for stall messages: (http_in_flight, http_limit, cooldown_deadline, overloads)."""


async def run_batch(
    items: Sequence[T],
    fn: Callable[[int, T], Awaitable[ItemResult[R]]],
    cfg: BatchConfig,
    *,
    emit: Callable[[str], None],
    runtime_view: StallInfo | None = None,
    lookup: Lookup[R] | None = None,
) -> list[R | None]:
    """Run ``fn`` over every item with ``cfg.num_workers`` workers; see module doc.

    With ``lookup`` (the prompt cache), a feeder asks it about ``LOOKUP_CHUNK`` items
    at a time: hits are filled in directly (one Monitor event per chunk), only misses
    go to the workers, through a channel bounded by the worker count.
    """
    n = len(items)
    results: list[R | None] = [None] * n
    budget = FailureBudget(cfg.max_failures, cfg.keep_failure_summaries)
    started: dict[int, float] = {}
    # Without a lookup, workers take indices from one shared iterator: next() never
    # awaits, so no two workers get the same index, and nothing is made per item up
    # front. With one, the feeder sends misses through a channel bounded by the workers.
    feed = iter(range(n))
    misses_send, misses_recv = trio.open_memory_channel[int](cfg.num_workers)
    fatal: list[BaseException] = []
    events_send, events_recv = trio.open_memory_channel[ItemFinished | CachedItems](EVENT_BUFFER)

    def stall_context(now: float) -> StallContext:
        oldest = now - min(started.values()) if started else None
        in_flight, limit, deadline, overloads = (
            runtime_view() if runtime_view else (None, None, 0.0, 0)
        )
        return StallContext(
            len(started), oldest, in_flight, limit, max(0.0, deadline - now), overloads
        )

    monitor = Monitor(cfg, n, events_recv, emit, stall_context)

    async def feeder() -> None:
        assert lookup is not None
        async with misses_send:
            for first in range(0, n, LOOKUP_CHUNK):
                chunk = list(range(first, min(n, first + LOOKUP_CHUNK)))
                hits = await lookup(chunk)
                for i, hit in hits.items():
                    results[i] = hit.value
                if hits:
                    await events_send.send(CachedItems(len(hits), trio.current_time()))
                for i in chunk:
                    if i not in hits:
                        await misses_send.send(i)

    async def worker(
        batch_scope: trio.CancelScope, source: Iterator[int] | trio.MemoryReceiveChannel[int]
    ) -> None:
        if isinstance(source, trio.MemoryReceiveChannel):
            async with source:
                async for i in source:
                    if not await one_item(batch_scope, i):
                        return
            return
        for i in source:
            if not await one_item(batch_scope, i):
                return

    async def one_item(batch_scope: trio.CancelScope, i: int) -> bool:
        """Run item ``i``; False when the batch must stop."""
        start = trio.current_time()
        started[i] = start
        try:
            item = await fn(i, items[i])
        except PROGRAMMING_ERRORS as exc:
            fatal.append(exc)
            batch_scope.cancel()
            return False
        finally:
            del started[i]
        results[i] = item.value
        event = ItemFinished(
            start,
            trio.current_time(),
            item.kind,
            item.attempts,
            item.prompt_tokens,
            item.completion_tokens,
            item.failure,
        )
        try:
            events_send.send_nowait(event)
        except trio.WouldBlock:
            await events_send.send(event)
        if item.failure is not None and budget.record(item.failure):
            batch_scope.cancel()
            return False
        return True

    try:
        async with trio.open_nursery() as batch:
            await batch.start(monitor.run)
            async with trio.open_nursery() as workers:
                if lookup is not None:
                    workers.start_soon(feeder)
                for _ in range(min(cfg.num_workers, n)):
                    source = misses_recv.clone() if lookup is not None else feed
                    workers.start_soon(worker, batch.cancel_scope, source)
                misses_recv.close()
            await events_send.aclose()
    finally:
        monitor.finish()
    if fatal:
        raise fatal[0]
    if budget.max_failures is not None and budget.count > budget.max_failures:
        raise BatchAbortedError(budget.abort_message(), results, budget.failures)
    return results


def response_item(result: MinimaLlmResponse | MinimaLlmFailure, attempts: int) -> ItemResult[Any]:
    """ItemResult for a request's result."""
    if isinstance(result, MinimaLlmFailure):
        return ItemResult(result, "failed", attempts, failure=result)
    return ItemResult(
        result,
        "cached" if result.cached else "ok",
        attempts,
        result.prompt_tokens,
        result.completion_tokens,
    )


async def callable_item(
    index: int, call: Callable[[T], Awaitable[tuple[Any, bool]]], item: T
) -> ItemResult[Any]:
    """Run a user's function on one item; ``call`` returns ``(value, cached)`` (see
    ``reporting_cached``). Exceptions other than programming errors become failures."""
    try:
        value, cached = await call(item)
    except PROGRAMMING_ERRORS:
        raise
    except Exception as exc:
        return exception_item(index, exc)
    return value_item(value, cached)


def exception_item(index: int, exc: BaseException) -> ItemResult[Any]:
    """An item whose function raised: a failure value naming the item and the error."""
    failure = MinimaLlmFailure(
        request_id=f"item-{index}",
        error_type=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        attempts=0,
    )
    return ItemResult(failure, "failed", failure=failure)


def value_item(value: Any, cached: bool) -> ItemResult[Any]:
    """ItemResult for what a user's function returned."""
    if value is None:
        return ItemResult(None, "none")
    if isinstance(value, MinimaLlmFailure):
        return ItemResult(value, "failed", value.attempts, failure=value)
    if isinstance(value, MinimaLlmResponse):
        return response_item(value, 0)
    return ItemResult(value, "cached" if cached else "ok")


# -- the documented entry point for any async function ---------------------------------


async def run_batched_callable(
    items: Sequence[T],
    async_fn: Callable[[T], Awaitable[R]],
    batch_config: BatchConfig | None = None,
    *,
    progress: Progress = None,
) -> list[R | None]:
    """Run ``async_fn`` over ``items`` with the batch machinery (workers, heartbeat,
    stall warning, failure budget); results are index-aligned with ``items``.

    An exception from ``async_fn`` becomes a :class:`MinimaLlmFailure` in its slot and
    counts toward ``max_failures`` — except programming errors (TypeError, NameError,
    AttributeError …), which stop the batch and propagate. Under asyncio ``async_fn``
    runs on the caller's loop; under trio, in the caller's run. ``batch_config``
    defaults to ``BatchConfig.from_env()``.
    """
    cfg = batch_config if batch_config is not None else BatchConfig.from_env()
    emit = make_emitter(progress)
    item_list = items if isinstance(items, Sequence) else list(items)
    call = reporting_cached(async_fn)
    if _bridge.trio_token_here() is not None:

        async def trio_item(i: int, item: T) -> ItemResult[Any]:
            return await callable_item(i, call, item)

        return await run_batch(item_list, trio_item, cfg, emit=emit)

    on_loop = _bridge.asyncio_fn_for_trio(call)

    async def loop_item(i: int, item: T) -> ItemResult[Any]:
        return await callable_item(i, on_loop, item)

    async def whole_batch() -> list[R | None]:
        return await run_batch(item_list, loop_item, cfg, emit=emit)

    return await _bridge.await_in_trio(whole_batch)
