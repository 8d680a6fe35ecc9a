"""A batch's input, taken one item at a time (:class:`ItemSource`).

From the iterable itself, lazily (it may be a generator of a million requests); within
the ``window`` when there is one (a stream's: how far the input may be read ahead of
what its consumer has taken); or, with the prompt cache, from the misses the cache
reader hands on (it reads the input ahead in chunks and answers hits in bulk).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal

import trio

__all__ = ["ItemSource", "Taken", "noted"]

Taken = tuple[int, Any]
"""An item and its place in the input."""


def noted(exc: BaseException, note: str) -> BaseException:
    """``exc`` with ``note`` added (what raised it, which item): the batch raises it."""
    exc.add_note(note)
    return exc


class ItemSource:
    """The input of one batch. ``misses``: the cache reader's, once it is set;
    ``exhausted``: no more items will come. Every method takes ``stop``, told of an
    exception the input raised (the source then ends)."""

    __slots__ = ("_items", "_window", "exhausted", "misses")

    def __init__(self, items: Iterable[Any], window: trio.Semaphore | None) -> None:
        self._items: Iterator[Taken] = enumerate(items)
        self._window = window
        self.misses: trio.MemoryReceiveChannel[Taken] | None = None
        self.exhausted = False

    def __repr__(self) -> str:
        return f"<ItemSource {'exhausted' if self.exhausted else 'open'}>"

    def take(self, stop: Callable[[BaseException], None]) -> Taken | None:
        """The next input item (the iterable's, without the window), or None at the end
        (or when the input raised)."""
        if self.exhausted:
            return None
        try:
            return next(self._items)
        except StopIteration:
            self.exhausted = True
        except Exception as exc:
            self.exhausted = True
            stop(noted(exc, "minimallm: raised by the batch's input while taking an item"))
        return None

    async def next(self, stop: Callable[[BaseException], None]) -> Taken | None:
        """:meth:`take`, within the window (waiting for room when there is none)."""
        taken = self._take_now(stop)
        if taken is not False:
            return taken
        window = self._window
        assert window is not None  # only a full window makes one wait
        await window.acquire()
        return self._take_within(window, stop)

    def ready(self, stop: Callable[[BaseException], None]) -> Taken | Literal[False] | None:
        """The next item if one is there without waiting (a miss, or an input item
        within the window); None: no more; False: none is there yet."""
        misses = self.misses
        if misses is not None:
            try:
                return misses.receive_nowait()
            except trio.WouldBlock:
                return False
            except trio.EndOfChannel:
                self.exhausted = True
                return None
        return self._take_now(stop)

    def _take_now(self, stop: Callable[[BaseException], None]) -> Taken | Literal[False] | None:
        """The next input item within the window without waiting; False: the window
        is full."""
        window = self._window
        if window is None:
            return self.take(stop)
        if self.exhausted:
            return None
        try:
            window.acquire_nowait()
        except trio.WouldBlock:
            return False
        return self._take_within(window, stop)

    def _take_within(
        self, window: trio.Semaphore, stop: Callable[[BaseException], None]
    ) -> Taken | None:
        """:meth:`take` once room in the window is held (given back at the end)."""
        taken = self.take(stop)
        if taken is None:
            window.release()
        return taken

    async def wait(self, stop: Callable[[BaseException], None]) -> Taken | None:
        """The next item, waiting for it: a miss, or an input item within the window;
        None: no more."""
        misses = self.misses
        if misses is None:
            return await self.next(stop)
        try:
            return await misses.receive()
        except trio.EndOfChannel:
            self.exhausted = True
            return None
