"""An asyncio coroutine function awaited from trio: ``run_batched_callable`` called
from asyncio runs the batch engine in the trio thread, and each item's function on the
caller's own asyncio loop."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

from minimallm._errors import BackendClosedError

__all__ = ["asyncio_fn_for_trio"]

T = TypeVar("T")


def asyncio_fn_for_trio(
    async_fn: Callable[[Any], Coroutine[Any, Any, T]],
) -> Callable[[Any], Awaitable[T]]:
    """Wrap an asyncio coroutine function so trio code (the batch engine, in the trio
    thread) can await it: each call runs as a task on the *calling* asyncio loop, in a
    copy of the caller's context. Cancelling the trio side cancels the asyncio task.
    Call this on the loop's thread."""
    loop = asyncio.get_running_loop()
    caller_context = contextvars.copy_context()

    async def in_trio(item: Any) -> T:
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        holder: list[asyncio.Task[T]] = []

        def wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        def start() -> None:
            task = loop.create_task(async_fn(item), context=caller_context.copy())
            task.add_done_callback(wake)
            holder.append(task)

        loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except BaseException:
            with contextlib.suppress(RuntimeError):  # the loop is already closed
                loop.call_soon_threadsafe(lambda: holder and holder[0].cancel())
            raise
        task = holder[0]
        if task.cancelled():
            raise BackendClosedError("the item's asyncio task was cancelled")
        return task.result()

    return in_trio
