"""The mock server's connections and listening over time: open connections (reset
together), refuse outages, and waiting on a connection (the sockets: ``sockets.py``).

During a ``refuse`` outage the listener is closed (connects are refused) and every open
connection is reset; afterwards the server listens on the same port again.
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial

import trio

from minimallm._http.server import RequestParser
from minimallm.mock.sockets import ServerListener, ServerStream

__all__ = [
    "Connections",
    "RefusalWindow",
    "reset_with_rst",
    "serve_listening",
    "wait_watching",
]

_LINGER_ZERO = struct.pack("ii", 1, 0)
_RECV_BYTES = 65536

RefusalWindow = tuple[float, float, str]
"""``(start_s, end_s, label)`` of a refuse outage, seconds from the first chat request."""


def reset_with_rst(stream: ServerStream) -> None:
    """Make the next close of ``stream`` send an RST instead of a FIN."""
    stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)


class Connections:
    """The open connections' cancel scopes, so an outage can reset them all at once."""

    __slots__ = ("_open",)

    def __init__(self) -> None:
        self._open: dict[int, tuple[trio.CancelScope, ServerStream]] = {}

    @contextmanager
    def track(self, conn_id: int, stream: ServerStream) -> Iterator[trio.CancelScope]:
        """Register a connection for the ``with`` block; run its handler inside the
        scope yielded, which ``reset_all`` cancels."""
        with trio.CancelScope() as scope:
            self._open[conn_id] = (scope, stream)
            try:
                yield scope
            finally:
                del self._open[conn_id]

    def reset_all(self) -> int:
        """Reset every open connection (RST on close) and end its handler (at its next
        checkpoint; it sends nothing more); return how many there were."""
        for scope, stream in self._open.values():
            reset_with_rst(stream)
            scope.cancel()
        return len(self._open)

    def __len__(self) -> int:
        return len(self._open)

    def __repr__(self) -> str:
        return f"<Connections open={len(self._open)}>"


async def serve_listening(
    listeners: list[ServerListener],
    *,
    handler: Callable[[ServerStream], Awaitable[object]],
    handler_nursery: trio.Nursery,
    reopen: Callable[[], Awaitable[list[ServerListener]]],
    windows: Sequence[RefusalWindow] = (),
    origin: Callable[[], Awaitable[float]] | None = None,
    refuse: Callable[[str], None] | None = None,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept connections (each served by ``handler`` in ``handler_nursery``) until
    cancelled. For each refuse window, in order: at ``origin() + start`` stop accepting
    and close the listeners, call ``refuse(label)`` (which resets open connections),
    and at ``origin() + end`` listen again through ``reopen()``. ``origin`` waits until
    the first chat request has arrived and returns its time (trio clock, seconds)."""
    plan: list[RefusalWindow | None] = [*windows, None]
    for i, window in enumerate(plan):
        async with trio.open_nursery() as accepting:
            await accepting.start(
                partial(trio.serve_listeners, handler, listeners, handler_nursery=handler_nursery)
            )
            if i == 0:
                task_status.started()
            if window is None or origin is None:
                await trio.sleep_forever()
                return
            t0 = await origin()
            await trio.sleep_until(t0 + window[0])
            accepting.cancel_scope.cancel()  # serve_listeners closes the listeners
        if refuse is not None:
            refuse(window[2])
        await trio.sleep_until(t0 + window[1])
        listeners = await reopen()


async def wait_watching(
    stream: ServerStream, parser: RequestParser, wait: Callable[[], Awaitable[object]]
) -> bool:
    """Await ``wait()`` while reading the socket: True once it completed, False if the
    client went away first (EOF or reset; ``wait`` is cancelled). Bytes that arrive (a
    pipelined request) are fed to ``parser``."""
    completed = False
    async with trio.open_nursery() as nursery:

        async def watch() -> None:
            try:
                while data := await stream.receive_some(_RECV_BYTES):
                    parser.feed(data)
            except trio.BrokenResourceError:
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(watch)
        await wait()
        completed = True
        nursery.cancel_scope.cancel()
    return completed
