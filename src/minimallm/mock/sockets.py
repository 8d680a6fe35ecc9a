"""The mock server's own socket layer: listeners that hand out :class:`ServerStream`,
a stream straight on the accepted non-blocking socket.

Why not trio's ``SocketListener``/``SocketStream``: the mock must not be the
bottleneck of a benchmark at latency 0, and trio's general streams spend about a
quarter of its CPU per request (a conflict detector, a context manager and a task
switch around every send and receive). A mock connection has one task reading and
writing it (and, while an answer waits, one task watching it for EOF), so it needs
none of that; the client's streams (``minimallm._http.streams``) skip the same work.

The listeners are bound by trio's ``open_tcp_listeners`` (its address and option
handling), then taken over as plain sockets; ``trio.serve_listeners`` serves them as
any trio listener (it accepts, starts a handler per connection, and retries when the
process is out of file descriptors). Like trio's listener, :meth:`ServerListener.accept`
skips the errors of a connection that died before it was accepted.
"""

from __future__ import annotations

import errno
import socket
from contextlib import suppress

import trio

from minimallm._http.streams import send_all_to

__all__ = ["ServerListener", "ServerStream", "open_listeners"]

_SKIPPED_ACCEPT_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (  # trio's list (trio/_highlevel_socket.py): a connection lost early
        "EPERM",  # Linux: denied by the firewall
        "ECONNABORTED",  # BSDs: closed or reset before accept
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)
"""``accept(2)`` errors that concern one connection, not the listener: skipped."""


def _failure(exc: OSError) -> trio.BrokenResourceError | trio.ClosedResourceError:
    """What a failed ``send``/``recv`` means: closed here (another task closed the
    socket as this one woke) or the client went away."""
    if exc.errno == errno.EBADF:
        return trio.ClosedResourceError("the connection was closed")
    return trio.BrokenResourceError(f"the client went away: {exc}")


class ServerStream(trio.abc.AsyncResource):
    """One accepted connection. What a handler needs of a trio stream, with its errors:
    :meth:`send_all`, :meth:`receive_some` (``b""`` at EOF), :meth:`aclose`, and
    :meth:`setsockopt` (``SO_LINGER`` to reset). A peer that went away raises
    ``trio.BrokenResourceError``; a stream closed here (also by another task while this
    one waited on it) raises ``trio.ClosedResourceError``.

    ``send_all`` checks for cancellation but does not yield when the kernel takes the
    whole answer (it nearly always does): the handler's next :meth:`receive_some` waits
    for the next request anyway, and it always yields. A handler that answers requests
    already in its buffer (a client pipelining) yields between them itself
    (``server.py``)."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        with suppress(OSError):  # as trio's streams do (it fails on a reset one on macOS)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def setsockopt(self, level: int, option: int, value: bytes) -> None:
        """Set a socket option (the mock resets a connection with ``SO_LINGER`` 0)."""
        self._sock.setsockopt(level, option, value)

    async def send_all(self, data: bytes) -> None:
        """Send every byte of ``data``."""
        sock = self._sock
        if sock.fileno() < 0:
            raise trio.ClosedResourceError("the connection was closed")
        await trio.lowlevel.checkpoint_if_cancelled()  # (it yields only when cancelled)
        try:
            await send_all_to(sock, data)
        except OSError as exc:
            raise _failure(exc) from exc

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` once some arrived; ``b""`` at EOF. Waits for the socket
        first: between a client's requests nothing is there yet (trying first costs a
        failed ``recv`` and its exception per request)."""
        sock = self._sock
        if sock.fileno() < 0:
            raise trio.ClosedResourceError("the connection was closed")
        while True:
            await trio.lowlevel.wait_readable(sock)  # a checkpoint, even when readable
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:  # a spurious wake-up
                continue
            except OSError as exc:
                raise _failure(exc) from exc

    async def aclose(self) -> None:
        """Close the connection (a task waiting on it gets ClosedResourceError)."""
        sock = self._sock
        if sock.fileno() >= 0:
            trio.lowlevel.notify_closing(sock)
            sock.close()
        await trio.lowlevel.checkpoint()


class ServerListener(trio.abc.Listener[ServerStream]):
    """A bound, listening socket that accepts :class:`ServerStream` connections."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.socket = sock

    async def accept(self) -> ServerStream:
        """The next connection. Errors of a connection lost before it was accepted are
        skipped (see ``_SKIPPED_ACCEPT_ERRNOS``); any other goes to the caller
        (``trio.serve_listeners`` waits and retries when file descriptors run out)."""
        sock = self.socket
        while True:
            if sock.fileno() < 0:
                raise trio.ClosedResourceError("the listener was closed")
            await trio.lowlevel.checkpoint_if_cancelled()
            try:
                conn, _ = sock.accept()
            except BlockingIOError:
                await trio.lowlevel.wait_readable(sock)
                continue
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    raise trio.ClosedResourceError("the listener was closed") from None
                if exc.errno in _SKIPPED_ACCEPT_ERRNOS:
                    continue
                raise
            try:
                stream = ServerStream(conn)
            except BaseException:
                conn.close()
                raise
            await trio.lowlevel.cancel_shielded_checkpoint()
            return stream

    async def aclose(self) -> None:
        """Stop listening (connects are refused from now on)."""
        if self.socket.fileno() >= 0:
            trio.lowlevel.notify_closing(self.socket)
            self.socket.close()
        await trio.lowlevel.checkpoint()


async def open_listeners(host: str, port: int) -> list[ServerListener]:
    """Listen on ``host:port``, bound as ``trio.open_tcp_listeners`` binds; with port 0
    only the first address is kept (a name with several addresses would otherwise get
    a different free port on each)."""
    bound = await trio.open_tcp_listeners(port, host=host)
    if port == 0:
        for extra in bound[1:]:
            await extra.aclose()
        bound = bound[:1]
    return [ServerListener(socket.socket(fileno=b.socket.detach())) for b in bound]
