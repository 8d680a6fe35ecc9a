"""``run_batched_callable`` and ``stream_batched_callable``: the batch machinery over
any async function. Under asyncio the function runs on the caller's loop (in a copy of
the caller's context); under trio, in the caller's run."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import trio

from minimallm import _bridge
from minimallm._batch.collect import collect
from minimallm._batch.engine import Deliver, run_batch
from minimallm._batch.items import ItemResult, callable_item
from minimallm._batch.stream import AsyncioBatchStream, EngineStarter, TrioBatchStream
from minimallm._config.settings import BatchConfig
from minimallm._context import reporting_cached
from minimallm._progress import Progress, make_sink
from minimallm._progress.calls import CallCounter

__all__ = ["run_batched_callable", "stream_batched_callable"]

T = TypeVar("T")
R = TypeVar("R")


def _checked(
    entry: str, items: object, async_fn: Any, batch_config: object
) -> tuple[Callable[[Any], Awaitable[Any]], BatchConfig]:
    """The arguments of ``entry`` checked: TypeError naming the bad one and what it
    takes. Returns the function (wrapped so a synchronous one is caught on its first
    call, naming the argument) and the batch configuration."""
    if items is None or isinstance(items, str | bytes) or not isinstance(items, Iterable):
        raise TypeError(
            f"{entry}(items=...) takes an iterable of items (a list, a tuple, a generator), "
            f"got {type(items).__name__}"
        )
    if batch_config is None:
        cfg = BatchConfig.from_env()
    elif isinstance(batch_config, BatchConfig):
        cfg = batch_config
    else:
        hint = (
            " (use its .batch)"
            if hasattr(batch_config, "batch")
            else " (build one: BatchConfig(**settings), or BatchConfig.from_env())"
        )
        raise TypeError(
            f"{entry}(batch_config=...) takes a BatchConfig or None, got "
            f"{type(batch_config).__name__}{hint}"
        )
    if not callable(async_fn):
        raise TypeError(
            f"{entry}(async_fn=...) takes an async function (async def), got "
            f"{type(async_fn).__name__}"
        )
    if inspect.iscoroutinefunction(async_fn) or inspect.iscoroutinefunction(
        getattr(async_fn, "__call__", None)  # noqa: B004 (an object with async __call__)
    ):
        return async_fn, cfg
    name = getattr(async_fn, "__qualname__", type(async_fn).__name__)
    if inspect.isbuiltin(async_fn) or isinstance(async_fn, type):
        raise TypeError(
            f"{entry}(async_fn=...) takes an async function (async def), got {name}, "
            "which is not one"
        )
    sync_fn = async_fn

    async def awaited(item: Any) -> Any:  # a lambda returning a coroutine is fine
        result = sync_fn(item)
        if not inspect.isawaitable(result):
            raise TypeError(
                f"{entry}(async_fn=...) takes an async function (async def); {name} "
                f"returned {type(result).__name__}, not an awaitable"
            )
        return await result

    return awaited, cfg


def _describe(index: int, item: object) -> str:
    text = repr(item)
    return f"item {index} ({text if len(text) <= 60 else text[:57] + '...'})"


def _as_is(result: ItemResult[Any]) -> ItemResult[Any]:
    """The batch's ``finish``: an item's coroutine (:func:`callable_item`) already
    returns its :class:`ItemResult`."""
    return result


def _total(items: Iterable[Any]) -> int | None:
    try:
        return len(items)  # type: ignore[arg-type]
    except TypeError:
        return None


def _starter(
    items: Iterable[T],
    async_fn: Callable[[T], Awaitable[R]],
    cfg: BatchConfig,
    progress: Progress,
    total: int | None,
    calls: CallCounter | None = None,
) -> EngineStarter:
    call = reporting_cached(async_fn)
    on_trio = _bridge.trio_token_here() is not None
    run_item = call if on_trio else _bridge.asyncio_fn_for_trio(call)
    sink = make_sink(progress, cfg.heartbeat_s)

    def one(
        index: int, item: T, events: Any, worker: Any, order: int
    ) -> Awaitable[ItemResult[Any]]:
        return callable_item(index, run_item, item)

    async def start(deliver: Deliver, window: trio.Semaphore | None) -> None:
        await run_batch(
            items,
            one,
            _as_is,
            cfg,
            deliver=deliver,
            sink=sink,
            total=total,
            describe=_describe,
            window=window,
            calls=calls,
        )

    return start


async def run_batched_callable(
    items: Iterable[T],
    async_fn: Callable[[T], Awaitable[R]],
    batch_config: BatchConfig | None = None,
    *,
    progress: Progress = None,
    calls: CallCounter | None = None,
) -> list[R | None]:
    """Run ``async_fn`` over ``items`` with the batch machinery (workers, heartbeat,
    stall warning, failure budget); results are index-aligned with ``items``.

    An exception from ``async_fn`` becomes a :class:`MinimaLlmFailure` in its slot and
    counts toward ``max_failures`` — except programming errors (TypeError, NameError,
    AttributeError …), which stop the batch and are raised as themselves, with a note
    naming the item and the results so far as ``.results``. Under asyncio ``async_fn``
    runs on the caller's loop; under trio, in the caller's run. ``batch_config``
    defaults to ``BatchConfig.from_env()``. ``calls``: a counter ``async_fn`` bumps
    for each LM call it makes (``run_dspy_batch`` does), shown in the progress.
    """
    async_fn, cfg = _checked("run_batched_callable", items, async_fn, batch_config)
    item_list = items if isinstance(items, list | tuple) else list(items)
    start = _starter(item_list, async_fn, cfg, progress, len(item_list), calls)
    if _bridge.trio_token_here() is not None:
        return await collect(start, len(item_list))

    async def whole_batch() -> list[R | None]:
        return await collect(start, len(item_list))

    return await _bridge.await_in_trio(whole_batch)


def stream_batched_callable(
    items: Iterable[T],
    async_fn: Callable[[T], Awaitable[R]],
    batch_config: BatchConfig | None = None,
    *,
    ordered: bool = False,
    progress: Progress = None,
    total: int | None = None,
) -> TrioBatchStream[R] | AsyncioBatchStream[R]:
    """``async with stream_batched_callable(items, fn) as results: async for i, r in
    results``: each ``(index, value)`` as soon as it is ready (in input order with
    ``ordered=True``); ``items`` may be any iterable, read lazily."""
    async_fn, cfg = _checked("stream_batched_callable", items, async_fn, batch_config)
    total = total if total is not None else _total(items)
    window = max(1024, 4 * cfg.num_workers)
    if _bridge.trio_token_here() is not None:
        return TrioBatchStream(
            _starter(items, async_fn, cfg, progress, total), ordered=ordered, window=window
        )
    return AsyncioBatchStream(
        _starter(items, async_fn, cfg, progress, total), ordered=ordered, window=window
    )
