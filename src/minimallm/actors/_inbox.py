"""How the reporting actors (Pacer, Cooldown, Monitor) read their inbox: in bursts, one
wake-up for every message that arrived meanwhile. (The Limiter's inbox, on every
attempt's path, is its own: :mod:`.report_inbox`.)"""

from __future__ import annotations

import math
from typing import TypeVar

import trio

__all__ = ["receive_all", "receive_burst"]

T = TypeVar("T")


async def receive_burst(inbox: trio.MemoryReceiveChannel[T], deadline: float) -> list[T] | None:
    """Wait until ``deadline`` (trio time, seconds) for a message, then take every one
    already waiting. ``[]``: the deadline came first; None: the inbox is closed and
    empty."""
    burst: list[T] = []
    if deadline > trio.current_time():
        # messages already waiting (the actor was busy with its last burst): take
        # them without opening a cancel scope (once the deadline has passed, the old
        # way: the caller's deadline work must not wait behind a steady stream)
        try:
            burst.append(inbox.receive_nowait())
        except trio.WouldBlock:
            pass
        except trio.EndOfChannel:
            return None
    if not burst:
        if deadline == math.inf:  # no cancel scope (~8 µs to enter and leave) for none
            return await receive_all(inbox)
        with trio.move_on_at(deadline):
            try:
                burst.append(await inbox.receive())
            except trio.EndOfChannel:
                return None
    return _with_waiting(inbox, burst) if burst else burst


async def receive_all(inbox: trio.MemoryReceiveChannel[T]) -> list[T] | None:
    """Wait for a message, with no deadline of its own (a cancel scope of the caller's
    bounds the wait), then take every one already waiting. None: the inbox is closed
    and empty."""
    try:
        burst = [await inbox.receive()]
    except trio.EndOfChannel:
        return None
    return _with_waiting(inbox, burst)


def _with_waiting(inbox: trio.MemoryReceiveChannel[T], burst: list[T]) -> list[T]:
    """``burst`` and every message already waiting after it."""
    while True:
        try:
            burst.append(inbox.receive_nowait())
        except (trio.WouldBlock, trio.EndOfChannel):
            return burst
