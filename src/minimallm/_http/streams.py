"""The streams a connection talks over, straight on its non-blocking socket.

trio's ``SocketStream`` and ``SSLStream`` are general: conflict detectors, a send lock,
a task switch after every send, a retry loop of several awaits around each TLS call.
A connection here has one task and one request at a time, so it needs none of that:
:class:`PlainSocket` (plain ``http``) and :class:`TlsSocket` (TLS through an
``SSLObject`` and two memory BIOs, like ``SSLStream`` but without its machinery).
Measured against nginx on loopback (16 connections, latency 0): per request, plain
~20-24 µs, TLS through ``SSLStream`` ~47-52 µs, TLS through :class:`TlsSocket` ~31-33 µs.

Waits are trio's ``wait_readable``/``wait_writable``, so cancellation and
``notify_closing`` (how a connection is interrupted) work as for any trio socket.
Errors are ``OSError`` (``ssl.SSLError`` is one); EOF is ``b""``, with or without a
TLS ``close_notify`` (servers often skip it; the HTTP framing tells a cut body).
"""

from __future__ import annotations

import socket
import ssl

import trio

__all__ = ["PlainSocket", "TlsSocket", "send_all_to"]

_RECEIVE_BYTES = 64 * 1024


class PlainSocket:
    """The two stream operations a plain-``http`` request needs, straight on the
    non-blocking socket. ``receive_some`` reads at once when bytes are already there
    (the rest of an answer that came in several segments) and parks the task only when
    none are (parking costs a trip through trio's scheduler, ~10 µs, even when the
    socket is readable); ``send_all`` returns without yielding when the kernel takes
    the whole request at once (it nearly always does): trio's SocketStream yields after
    every send, one task switch per request, measured ~11 µs of CPU with its error
    translation; ``receive_some`` checks for cancellation first. Waits are trio's
    ``wait_readable``/``wait_writable``, so
    cancellation and ``notify_closing`` (how a connection is interrupted) work as for
    any trio socket."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    async def send_all(self, data: bytes) -> None:
        """Send every byte of ``data``: one ``send`` when the kernel takes it all."""
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        if sent < len(data):
            await send_all_to(self._sock, memoryview(data)[sent:])

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` once some arrived; b"" at EOF."""
        sock = self._sock
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:  # nothing yet (or a spurious wake-up): wait
                await trio.lowlevel.wait_readable(sock)

    async def receive_answer(self, max_bytes: int) -> bytes:
        """:meth:`receive_some` for the first bytes of the answer to a request just
        sent: those are almost never there yet, so this waits for the socket first
        (trying first costs a failed ``recv`` and its exception, ~2 µs per request)."""
        sock = self._sock
        while True:
            await trio.lowlevel.wait_readable(sock)  # a checkpoint
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:  # a spurious wake-up
                continue


class TlsSocket:
    """TLS on the non-blocking socket (client side), through ``context.wrap_bio``."""

    __slots__ = ("_incoming", "_object", "_outgoing", "_sock")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, server_hostname: str) -> None:
        self._sock = sock
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._object = context.wrap_bio(
            self._incoming, self._outgoing, server_side=False, server_hostname=server_hostname
        )

    async def do_handshake(self) -> None:
        """Shake hands (and verify the certificate, as the context says)."""
        while True:
            try:
                self._object.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                if not await self._fill():
                    raise ConnectionResetError(
                        "the server closed the connection during the TLS handshake"
                    ) from None
                continue
            await self._flush()
            return

    @property
    def buffered(self) -> bool:
        """Bytes received but not yet read (an idle connection should have none)."""
        return bool(self._incoming.pending or self._object.pending())

    async def send_all(self, data: bytes) -> None:
        """Encrypt and send every byte of ``data``."""
        self._object.write(data)  # a memory BIO takes it all
        await self._flush()

    async def receive_some(self, max_bytes: int) -> bytes:
        """Up to ``max_bytes`` of decrypted data once some arrived; b"" at EOF."""
        read = self._object.read
        while True:
            try:
                return read(max_bytes)
            except ssl.SSLWantReadError:
                if self._outgoing.pending:  # a post-handshake message to answer
                    await self._flush()
                if not await self._fill():
                    return b""
            except ssl.SSLZeroReturnError:  # close_notify
                return b""

    async def _flush(self) -> None:
        data = self._outgoing.read()
        if data:
            await send_all_to(self._sock, data)

    async def _fill(self) -> bool:
        """Move what the socket has into the incoming BIO; False at EOF."""
        sock = self._sock
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                data = sock.recv(_RECEIVE_BYTES)
            except BlockingIOError:  # a spurious wake-up
                continue
            if not data:
                self._incoming.write_eof()
                return False
            self._incoming.write(data)
            return True


async def send_all_to(sock: socket.socket, data: bytes | memoryview) -> None:
    """Send every byte of ``data`` on the non-blocking ``sock``, waiting for room when
    the kernel's buffer is full (no checkpoint when it takes everything at once).
    Errors are the socket's ``OSError``; ``trio.ClosedResourceError`` if the socket is
    closed while this waits."""
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        view = view[sent:]
