"""A minimal HTTP/1.1 client for one thing: POST a complete body on one keep-alive
connection and read the whole answer.

Why not httpcore: measured against the mock server at latency 0 on a 2-core box, one
request through ``httpcore.AsyncConnectionPool(max_connections=1)`` costs ~800-900 µs
of CPU (about 1,500 Python calls: Trace objects, h11's event machine, header
normalisation, two socket sends). In the same runs, minimallm's whole request path on
this client costs ~105-140 µs (benchmarks/: rows ``httpcore-trio`` and
``minimallm-trio``). A Worker makes every HTTP attempt of minimallm, so the client is
most of the CPU a batch spends.

What it does: plain ``http`` and ``https`` (TLS through the shared ``SSLContext``);
the request head and body in one send; responses framed by ``Content-Length``, by
``Transfer-Encoding: chunked``, or by the server closing; keep-alive unless the server
says ``Connection: close`` (or speaks HTTP/1.0 without keep-alive); 1xx interim
answers skipped; an idle connection the server has closed is noticed before it is
reused. What it does not: proxies, HTTP/2, response decompression (it never asks for
a compressed answer), redirects, pipelining.

Errors are raised as httpcore's exception classes, so ``_transport`` maps them to
outcomes in its one table: ``ConnectError`` (DNS, refused, TLS handshake),
``WriteError`` / ``ReadError`` (reset, broken pipe), ``RemoteProtocolError`` (no
answer, malformed head, cut-short body), ``LocalProtocolError`` (a header we were
asked to send is invalid), ``UnsupportedProtocol`` (a scheme other than http/https).
Anything that interrupts a request (an error, a timeout, a cancelled caller) closes
the connection at once: a half-read answer can never be reused.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import httpcore
import trio

from minimallm._http_reply import HttpReply, LazyHeaders, scan_head

__all__ = ["MAX_HEAD_BYTES", "Http11Connection", "HttpReply"]

_log = logging.getLogger("minimallm.http")
"""Debug lines per connection (connect, close), never per request; no headers."""

MAX_HEAD_BYTES = 64 * 1024
"""Longest response head (status line + headers) accepted, bytes."""

_RECEIVE_BYTES = 64 * 1024
_NO_BODY_STATUSES = frozenset({204, 304})


class _PlainSocket:
    """The two stream operations a plain-``http`` request needs, straight on the
    non-blocking socket. ``receive_some`` waits for readability first, so it is a
    checkpoint like trio's; ``send_all`` returns without yielding when the kernel takes
    the whole request at once (it nearly always does): trio's SocketStream yields after
    every send, one task switch per request, measured ~11 µs of CPU with its error
    translation. Waits are trio's ``wait_readable``/``wait_writable``, so
    cancellation and :meth:`Http11Connection.interrupt` (``notify_closing``) work as
    for any trio socket."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    async def send_all(self, data: bytes) -> None:
        sock = self._sock
        view = memoryview(data)
        while view:
            try:
                sent = sock.send(view)
            except BlockingIOError:
                await trio.lowlevel.wait_writable(sock)
                continue
            view = view[sent:]

    async def receive_some(self, max_bytes: int) -> bytes:
        sock = self._sock
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:  # a spurious wake-up
                continue


class Http11Connection:
    """One keep-alive connection to the origin of ``url``; POSTs go to its path.

    Not safe for concurrent use: one request at a time (a Worker owns it).
    """

    __slots__ = (
        "_buf",
        "_connecting",
        "_head_for",
        "_head_prefix",
        "_host",
        "_idle_poll",
        "_port",
        "_prefix",
        "_scheme_error",
        "_sock",
        "_ssl_context",
        "_stream",
        "requests",
    )

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        parts = urlsplit(url)
        self._scheme_error: str | None = None
        if parts.scheme not in ("http", "https"):
            self._scheme_error = f"unsupported URL scheme {parts.scheme!r}"
        self._host = parts.hostname or ""
        default_port = 443 if parts.scheme == "https" else 80
        self._port = parts.port or default_port
        self._ssl_context = ssl_context if parts.scheme == "https" else None
        if parts.scheme == "https" and ssl_context is None:
            self._scheme_error = "https needs an SSLContext"
        host = self._host if ":" not in self._host else f"[{self._host}]"
        authority = host if self._port == default_port else f"{host}:{self._port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._prefix = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n".encode("ascii")
        self._head_for: Sequence[tuple[bytes, bytes]] | None = None
        self._head_prefix = b""
        self._stream: trio.abc.Stream | _PlainSocket | None = None
        self._sock: trio.socket.SocketType | socket.socket | None = None
        self._idle_poll: select.poll | None = None
        self._connecting: trio.CancelScope | None = None
        self._buf = bytearray()
        self.requests = 0

    def __repr__(self) -> str:
        state = "open" if self._stream is not None else "closed"
        return f"<Http11Connection {self._host}:{self._port} {state} requests={self.requests}>"

    # -- the request ------------------------------------------------------------------

    async def post(self, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> HttpReply:
        """Send ``POST`` with ``headers`` (plus Host and Content-Length) and ``body``;
        return the complete answer. Reconnects when the connection is closed."""
        if self._scheme_error is not None:
            raise httpcore.UnsupportedProtocol(self._scheme_error)
        head = self._head(headers) + b"content-length: %d\r\n\r\n" % len(body)
        try:
            if self._stream is None or self._went_stale():
                self._close()
                await self._connect()
            stream = self._stream
            if stream is None:
                raise httpcore.WriteError("connection interrupted")
            self.requests += 1
            try:
                await stream.send_all(head + body)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                raise httpcore.WriteError(_reason(exc)) from exc
            raw, status, length, chunked, reusable = await self._read_head()
            if status in _NO_BODY_STATUSES:
                answer = b""
            elif chunked:
                answer = await self._read_chunked()
            elif length is not None:
                answer = await self._read_exact(length)
            else:
                answer = await self._read_to_close()
                reusable = False
            if self._buf:  # bytes nobody asked for: the framing cannot be trusted
                reusable = False
        except BaseException:
            self._close()
            raise
        if not reusable:
            self._close()
        return HttpReply(status, LazyHeaders(raw), answer)

    async def aclose(self) -> None:
        """Close the connection (idempotent; the next ``post`` reconnects)."""
        self._close()

    def interrupt(self) -> None:
        """End the request in progress from another task, at once: a connect is
        cancelled, an open socket is closed (trio wakes a send or receive waiting on it,
        which fails with WriteError/ReadError). The next ``post`` reconnects.

        This is how a Worker bounds an attempt by TIMEOUT_S without a cancel scope per
        request (see ``actors/worker.py``)."""
        if self._connecting is not None:
            self._connecting.cancel()
        self._close()

    def _head(self, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        # A backend sends the same header tuple every time: join it once.
        if headers is not self._head_for:
            lines = [self._prefix]
            for name, value in headers:
                if b"\r" in name + value or b"\n" in name + value or b":" in name:
                    raise httpcore.LocalProtocolError(f"invalid header {name!r}")
                lines.append(name + b": " + value + b"\r\n")
            self._head_prefix = b"".join(lines)
            self._head_for = headers
        return self._head_prefix

    # -- connection -------------------------------------------------------------------

    async def _connect(self) -> None:
        _log.debug("connecting to %s:%d (tls=%s)", self._host, self._port, bool(self._ssl_context))
        # DNS runs in a thread and connect() is not a socket we own yet: interrupt()
        # can only stop them through a cancel scope (one per connection, not per request).
        with trio.CancelScope() as scope:
            self._connecting = scope
            try:
                await self._open()
            finally:
                self._connecting = None
        if scope.cancel_called:  # even if the connect won the race: interrupt() wins
            self._close()
            raise httpcore.ConnectError("connect interrupted")

    async def _open(self) -> None:
        try:
            tcp = await trio.open_tcp_stream(self._host, self._port)
        except OSError as exc:
            raise httpcore.ConnectError(_reason(exc)) from exc
        self._idle_poll = select.poll()  # one per socket: poll(0) is ~1 µs, select ~2 µs
        self._idle_poll.register(tcp.socket, select.POLLIN)
        if self._ssl_context is None:
            # trio made it non-blocking with TCP_NODELAY; keep the plain socket only.
            sock = socket.socket(fileno=tcp.socket.detach())
            self._sock = sock
            self._stream = _PlainSocket(sock)
            return
        self._sock = tcp.socket
        tls = trio.SSLStream(
            tcp, self._ssl_context, server_hostname=self._host, https_compatible=True
        )
        self._stream = tls  # so a failed handshake still closes the socket
        try:
            await tls.do_handshake()
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise httpcore.ConnectError(_reason(exc)) from exc

    def _went_stale(self) -> bool:
        """An idle keep-alive socket that is readable was closed by the server (EOF)
        or carries bytes nobody asked for: either way it cannot be reused."""
        assert self._idle_poll is not None
        return bool(self._idle_poll.poll(0))

    def _close(self) -> None:
        self._stream = None
        self._buf.clear()
        if self._sock is not None:
            _log.debug("closing connection to %s:%d", self._host, self._port)
            if self._sock.fileno() >= 0:
                trio.lowlevel.notify_closing(self._sock)  # wakes a waiter with an error
            self._sock.close()
            self._sock = None
            self._idle_poll = None

    # -- the answer -------------------------------------------------------------------

    async def _receive(self) -> bytes | bytearray:
        stream = self._stream
        if stream is None:
            raise httpcore.ReadError("connection interrupted")
        try:
            return await stream.receive_some(_RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise httpcore.ReadError(_reason(exc)) from exc

    async def _read_head(self) -> tuple[bytes, int, int | None, bool, bool]:
        """The raw head and its framing (see ``_http_reply.scan_head``); 1xx skipped."""
        while True:
            raw = await self._read_until(b"\r\n\r\n", MAX_HEAD_BYTES, "response head")
            status, length, chunked, keep_alive = scan_head(raw)
            if status >= 200:
                return raw, status, length, chunked, keep_alive
            if status == 101:
                raise httpcore.RemoteProtocolError("unexpected 101 Switching Protocols")

    async def _read_until(self, marker: bytes, limit: int, what: str) -> bytes:
        buf = self._buf
        start = 0
        while True:
            end = buf.find(marker, start)
            if end >= 0:
                found = bytes(buf[:end])
                del buf[: end + len(marker)]
                return found
            if len(buf) > limit:
                raise httpcore.RemoteProtocolError(f"{what} longer than {limit} bytes")
            start = max(0, len(buf) - len(marker) + 1)
            data = await self._receive()
            if not data:
                if not buf and what == "response head":
                    raise httpcore.RemoteProtocolError(
                        "Server disconnected without sending a response."
                    )
                raise httpcore.RemoteProtocolError(f"peer closed connection inside the {what}")
            buf += data

    async def _read_exact(self, n: int) -> bytes:
        buf = self._buf
        while len(buf) < n:
            data = await self._receive()
            if not data:
                raise httpcore.RemoteProtocolError(
                    "peer closed connection without sending complete message body: "
                    f"received {len(buf)} bytes, expected {n}"
                )
            buf += data
        if len(buf) == n:
            out = bytes(buf)
            buf.clear()
            return out
        out = bytes(buf[:n])
        del buf[:n]
        return out

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        while True:
            line = await self._read_until(b"\r\n", 1024, "chunk size line")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise httpcore.RemoteProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0 or not size_text.isalnum():
                raise httpcore.RemoteProtocolError(f"bad chunk size {size_text[:20]!r}")
            if size == 0:
                while await self._read_until(b"\r\n", MAX_HEAD_BYTES, "chunked trailer"):
                    pass
                return b"".join(parts)
            parts.append(await self._read_exact(size))
            if await self._read_exact(2) != b"\r\n":
                raise httpcore.RemoteProtocolError("chunk not followed by CRLF")

    async def _read_to_close(self) -> bytes:
        # Neither Content-Length nor chunked: the answer ends when the server closes.
        while data := await self._receive():
            self._buf += data
        out = bytes(self._buf)
        self._close()
        return out


def _reason(exc: BaseException) -> str:
    cause = exc.__cause__ or exc.__context__
    text = str(cause) if cause is not None and str(cause) else str(exc)
    return text or type(exc).__name__
