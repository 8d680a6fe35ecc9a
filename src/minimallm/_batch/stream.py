"""Results of a batch as they come: ``async with ... as results: async for i, r in results``.

:class:`TrioBatchStream` runs the engine in a nursery of the caller's trio run and
yields ``(index, result)`` pairs, in completion order or (``ordered=True``) in input
order as soon as the next one is ready. Both are bounded: the engine reads the input at
most ``window`` items ahead of what the consumer has taken, so a slow item (or a slow
consumer) holds back at most ``window`` finished ones, the channel of ``window`` results
never makes the engine wait to hand one over, and a 10^6-item input is never read whole.

:class:`AsyncioBatchStream` and :class:`SyncBatchStream` give the same stream to asyncio
and plain-thread code: the trio stream is held open in minimallm's trio thread, and
results cross the bridge in bursts (one crossing per burst of ready results, not per
result).

Leaving the block early cancels the batch (in-flight attempts are ended). An exception
of the batch (an abort, a programming error in the item function, the backend closing)
is raised from the iteration, as itself; never an ExceptionGroup.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Generic, NoReturn, Self, TypeVar

import trio

import outcome
from minimallm import _bridge
from minimallm._batch.engine import Deliver

__all__ = [
    "BURST",
    "AsyncioBatchStream",
    "EngineStarter",
    "SyncBatchStream",
    "TrioBatchStream",
    "single_exception",
]

R = TypeVar("R")

EngineStarter = Callable[[Deliver, trio.Semaphore | None], Awaitable[Any]]
"""Runs a batch's engine to the end with the given ``deliver`` and window."""

BURST = 1024
"""Results handed across the bridge per crossing, at most."""

_ASYNC_USAGE = (
    "a batch stream is iterated inside its block: async with "
    "backend.stream_batched(requests) as results: async for index, result in results: ..."
)
_SYNC_USAGE = (
    "a batch stream is iterated inside its block: with "
    "backend.stream_batched_sync(requests) as results: for index, result in results: ..."
)


def _leaves(exc: BaseException) -> list[BaseException]:
    """The exceptions inside ``exc``'s groups that are not cancellations."""
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [] if isinstance(exc, trio.Cancelled) else [exc]


def single_exception(exc: BaseException) -> BaseException:
    """The one exception inside ``exc``'s groups that is not a cancellation, if there is
    exactly one; else ``exc`` itself."""
    if not isinstance(exc, BaseExceptionGroup):
        return exc
    leaves = _leaves(exc)
    return leaves[0] if len(leaves) == 1 else exc


class TrioBatchStream(Generic[R]):
    """The stream under trio (see the module docstring)."""

    def __init__(self, start: EngineStarter, *, ordered: bool, window: int) -> None:
        self._start = start
        self._ordered = ordered
        self._window = trio.Semaphore(window)
        self._send, self._recv = trio.open_memory_channel[tuple[int, R | None]](window)
        self._pending: dict[int, R | None] = {}
        self._next = 0
        self._error: BaseException | None = None
        self._nursery_cm: Any = None
        self._nursery: trio.Nursery | None = None

    async def __aenter__(self) -> Self:
        self._nursery_cm = trio.open_nursery()
        self._nursery = await self._nursery_cm.__aenter__()
        self._nursery.start_soon(self._engine)
        return self

    async def _engine(self) -> None:
        send = self._send.send_nowait

        def deliver(index: int, value: Any) -> None:
            # always room: at most ``window`` items are out of the consumer's hands
            send((index, value))

        async with self._send:
            try:
                await self._start(deliver, self._window)
            except BaseException as exc:
                if not _leaves(exc):
                    raise  # only cancellations: the stream's own scope absorbs them
                self._error = single_exception(exc)

    def __aiter__(self) -> Self:
        if self._nursery is None:  # never started: iterating would wait forever
            raise TypeError(_ASYNC_USAGE)
        return self

    async def __anext__(self) -> tuple[int, R | None]:
        # what is ready is taken without a checkpoint (one wake-up per burst, not per
        # result); the loop still yields whenever it has to wait
        if not self._ordered:
            taken = await self._receive()
            self._window.release()  # one more item of the input may be read
            return taken
        while self._next not in self._pending:
            index, value = await self._receive()
            self._pending[index] = value
        return self._take()

    async def _receive(self) -> tuple[int, R | None]:
        recv = self._recv
        try:
            return recv.receive_nowait()
        except trio.WouldBlock:
            pass
        except trio.EndOfChannel:
            self._finish()
        try:
            return await recv.receive()
        except trio.EndOfChannel:
            self._finish()

    def _take(self) -> tuple[int, R | None]:
        index = self._next
        self._next += 1
        self._window.release()  # one more item of the input may be read
        return index, self._pending.pop(index)

    def held_back(self) -> list[tuple[int, R | None]]:
        """The results finished but not handed over yet (behind a slower one, or not yet
        received), in index order; taken from the stream. Call inside the block, e.g.
        after stopping the iteration early, to keep what would otherwise be dropped."""
        while True:
            try:
                index, value = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                break
            self._pending[index] = value
        held = sorted(self._pending.items())
        self._pending.clear()
        return held

    async def next_burst(self) -> list[tuple[int, R | None]]:
        """The next result (waiting for it) and every other one ready now, in order
        (StopAsyncIteration at the end). For the bridge: one crossing per burst."""
        burst = [await self.__anext__()]
        while len(burst) < BURST:
            try:
                index, value = self._recv.receive_nowait()
            except (trio.WouldBlock, trio.EndOfChannel):
                break
            if not self._ordered:
                burst.append((index, value))
                self._window.release()
                continue
            self._pending[index] = value
            while self._next in self._pending and len(burst) < BURST:
                burst.append(self._take())
        return burst

    def _finish(self) -> NoReturn:
        if self._error is not None:
            error, self._error = self._error, None
            raise error
        raise StopAsyncIteration

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._nursery is not None
        self._nursery.cancel_scope.cancel()  # an early exit stops the batch
        self._recv.close()
        try:
            await self._nursery_cm.__aexit__(exc_type, exc, tb)
        except BaseException as raised:
            single = single_exception(raised)
            if single is raised:
                raise
            raise single from None
        if exc is None and self._error is not None:
            error, self._error = self._error, None
            raise error
        return None


class _Held(Generic[R]):
    """A :class:`TrioBatchStream` held open in minimallm's trio thread; its methods run
    there (each called through one bridge crossing)."""

    def __init__(self, start: EngineStarter, *, ordered: bool, window: int) -> None:
        self.stream: TrioBatchStream[R] = TrioBatchStream(start, ordered=ordered, window=window)
        self.started: _bridge.Started | None = None
        self.ended: outcome.Outcome[Any] | None = None
        self._opened: trio.Event | None = None
        self._close: trio.Event | None = None
        self._done: trio.Event | None = None

    def start(self) -> None:
        """(any thread) Open the stream in the trio thread, in a call of its own."""
        self.started = _bridge.start_in_trio(self._hold, self._on_done)

    async def _hold(self) -> None:
        self._events()
        assert self._opened is not None and self._close is not None
        async with self.stream:
            self._opened.set()
            await self._close.wait()

    def _events(self) -> None:
        if self._opened is None:
            self._opened, self._close, self._done = trio.Event(), trio.Event(), trio.Event()

    def _on_done(self, result: outcome.Outcome[Any]) -> None:
        self._events()
        assert self._opened is not None and self._done is not None
        self.ended = result
        self._opened.set()
        self._done.set()

    async def wait_opened(self) -> None:
        """(trio) Until the stream is open, or the call ended (its error raised)."""
        self._events()
        assert self._opened is not None
        await self._opened.wait()
        if self.ended is not None and self._done is not None and self._done.is_set():
            self.ended.unwrap()

    async def close(self) -> None:
        """(trio) Leave the stream (stopping the batch if it still runs) and wait."""
        self._events()
        assert self._close is not None and self._done is not None
        self._close.set()
        await self._done.wait()


class AsyncioBatchStream(Generic[R]):
    """The stream under asyncio (see the module docstring)."""

    def __init__(self, start: EngineStarter, *, ordered: bool, window: int) -> None:
        self._held: _Held[R] = _Held(start, ordered=ordered, window=window)
        self._buffer: list[tuple[int, R | None]] = []
        self._done = False

    async def __aenter__(self) -> Self:
        self._held.start()
        await _bridge.await_in_trio(self._held.wait_opened)
        return self

    def __aiter__(self) -> Self:
        if self._held.started is None:
            raise TypeError(_ASYNC_USAGE)
        return self

    async def __anext__(self) -> tuple[int, R | None]:
        if not self._buffer:
            if self._done:
                raise StopAsyncIteration
            try:
                self._buffer = await _bridge.await_in_trio(self._held.stream.next_burst)
            except StopAsyncIteration:
                self._done = True
                raise
            self._buffer.reverse()
        return self._buffer.pop()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await _bridge.await_in_trio(self._held.close)
        ended = self._held.ended
        if exc is None and ended is not None:
            ended.unwrap()


class SyncBatchStream(Generic[R]):
    """The stream for plain threads: ``with ... as results: for i, r in results``."""

    def __init__(self, start: EngineStarter, *, ordered: bool, window: int) -> None:
        self._held: _Held[R] = _Held(start, ordered=ordered, window=window)
        self._buffer: list[tuple[int, R | None]] = []
        self._done = False

    def __enter__(self) -> Self:
        self._held.start()
        _bridge.call_blocking(self._held.wait_opened)
        return self

    def __iter__(self) -> Self:
        if self._held.started is None:
            raise TypeError(_SYNC_USAGE)
        return self

    def __next__(self) -> tuple[int, R | None]:
        if not self._buffer:
            if self._done:
                raise StopIteration
            try:
                self._buffer = _bridge.call_blocking(self._held.stream.next_burst)
            except StopAsyncIteration:
                self._done = True
                raise StopIteration from None
            self._buffer.reverse()
        return self._buffer.pop()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _bridge.call_blocking(self._held.close)
        ended = self._held.ended
        if exc is None and ended is not None:
            ended.unwrap()
