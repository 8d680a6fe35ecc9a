"""A minimal HTTP/1.1 client for one thing: POST a complete body on one keep-alive
connection and read the whole answer.

Why not httpcore: measured against the mock server at latency 0 on a 2-core box, one
request through ``httpcore.AsyncConnectionPool(max_connections=1)`` costs ~800-900 µs
of CPU (about 1,500 Python calls: Trace objects, h11's event machine, header
normalisation, two socket sends). In the same runs, minimallm's whole request path on
this client costs ~105-140 µs (benchmarks/: rows ``httpcore-trio`` and
``minimallm-trio``). A Worker makes every HTTP attempt of minimallm, so the client is
most of the CPU a batch spends.

What it does: plain ``http`` and ``https``; through a forward proxy (absolute-form
requests for ``http``, a CONNECT tunnel for ``https``, see ``proxy``); the request
head and body in one send; responses framed by ``Content-Length``, by
``Transfer-Encoding: chunked``, or by the server closing, capped at
``max_response_bytes`` (on the wire and decoded); ``gzip``/``deflate`` bodies decoded
(``decode``); keep-alive unless the server says ``Connection: close`` (or speaks
HTTP/1.0 without keep-alive); 1xx interim answers skipped. What it does not: HTTP/2,
redirects, pipelining.

Keep-alive reuse. An idle connection the server has closed is noticed before reuse
(a readable idle socket: one ``poll(0)``). The race that check cannot see, the server
closing just as the request goes out, shows as a failed send or an EOF/reset before
any byte of the answer on a *reused* connection: the request is then sent again at
once on a fresh connection (SPEC §3.4: not an attempt, no backoff). Only once, and
never on a fresh connection, never after an ``interrupt()``, never once a byte of the
answer arrived.

Errors are the layer's own classes (``errors``), mapped to outcomes in
``_outcome/classify.py``'s one table. Anything that interrupts a request (an error, a timeout,
a cancelled caller) closes the connection at once: a half-read answer can never be
reused.
"""

from __future__ import annotations

import logging
import select
import socket
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import trio

from minimallm._http.decode import decode_body
from minimallm._http.dial import dial
from minimallm._http.errors import (
    ConnectError,
    HttpError,
    LocalProtocolError,
    ProxyRejectedError,
    ReadError,
    RemoteProtocolError,
    ResponseTooLarge,
    UnsupportedProtocol,
    WriteError,
)
from minimallm._http.framing import MAX_HEAD_BYTES, AnswerReader, reason
from minimallm._http.proxy import Proxy
from minimallm._http.reply import HttpReply, LazyHeaders, scan_head
from minimallm._http.streams import TlsSocket

__all__ = ["DEFAULT_MAX_RESPONSE_BYTES", "MAX_HEAD_BYTES", "Http11Connection", "HttpReply"]

_log = logging.getLogger("minimallm.http")
"""Debug lines per connection (connect, close, stale re-send), never per request; no headers."""

DEFAULT_MAX_RESPONSE_BYTES = 64 * 1024 * 1024
"""Largest response body accepted, on the wire and decoded, bytes (64 MiB)."""

_NO_BODY_STATUSES = frozenset({204, 304})


def _over_cap(length: int, cap: int) -> str:
    return (
        f"the answer has Content-Length: {length}, over the cap of {cap} bytes (MAX_RESPONSE_BYTES)"
    )


class Http11Connection(AnswerReader):
    """One keep-alive connection to the origin of ``url``; POSTs go to its path.

    ``ssl_context`` serves an ``https`` URL (and an ``https://`` proxy); ``trust`` names
    what it trusts, for messages. ``proxy`` is the forward proxy to go through (None:
    direct). ``max_response_bytes`` caps a body on the wire and decoded (bytes).
    ``setup_error`` is an error every ``post`` raises (a copy of it): a proxy variable
    or CA file that cannot be used fails the requests that need it, with its reason.

    Not safe for concurrent use: one request at a time (a Worker owns it).
    """

    __slots__ = (
        "_connecting",
        "_head_for",
        "_head_prefix",
        "_host",
        "_idle_poll",
        "_interrupted",
        "_origin_tls",
        "_port",
        "_prefix",
        "_proxy",
        "_setup_error",
        "_sock",
        "_ssl_context",
        "_trust",
        "connects",
        "requests",
        "resent",
    )

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        trust: str = "the given SSLContext",
        proxy: Proxy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        setup_error: HttpError | None = None,
    ) -> None:
        super().__init__(max_response_bytes)
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        self._setup_error = setup_error
        if scheme not in ("http", "https"):
            self._setup_error = UnsupportedProtocol(f"unsupported URL scheme {parts.scheme!r}")
        self._host = parts.hostname or ""
        default_port = 443 if scheme == "https" else 80
        self._port = parts.port or default_port
        self._origin_tls = scheme == "https"
        self._ssl_context = ssl_context
        self._trust = trust
        needs_tls = self._origin_tls or (proxy is not None and proxy.scheme == "https")
        if needs_tls and ssl_context is None and self._setup_error is None:
            self._setup_error = UnsupportedProtocol("https needs an SSLContext")
        self._proxy = proxy
        host = self._host if ":" not in self._host else f"[{self._host}]"
        authority = host if self._port == default_port else f"{host}:{self._port}"
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if proxy is not None and not self._origin_tls:
            target = f"http://{authority}{target}"  # absolute form: the proxy forwards it
        prefix = f"POST {target} HTTP/1.1\r\nhost: {authority}\r\n".encode("ascii")
        if proxy is not None and not self._origin_tls and proxy.authorization is not None:
            prefix += b"proxy-authorization: " + proxy.authorization + b"\r\n"
        self._prefix = prefix
        self._head_for: Sequence[tuple[bytes, bytes]] | None = None
        self._head_prefix = b""
        self._sock: trio.socket.SocketType | socket.socket | None = None
        self._idle_poll: select.poll | None = None
        self._connecting: trio.CancelScope | None = None
        self._interrupted = False
        self.connects = 0
        """Connections opened (TCP connect + tunnel + TLS handshake, each once)."""
        self.requests = 0
        """Requests sent (a stale re-send counts again)."""
        self.resent = 0
        """Requests sent again because a reused connection had been closed by the server."""

    def __repr__(self) -> str:
        state = "open" if self._stream is not None else "closed"
        via = "" if self._proxy is None else f" via {self._proxy.label}"
        return (
            f"<Http11Connection {self._host}:{self._port}{via} {state} "
            f"requests={self.requests} resent={self.resent}>"
        )

    # -- the request ------------------------------------------------------------------

    async def post(self, headers: Sequence[tuple[bytes, bytes]], body: bytes) -> HttpReply:
        """Send ``POST`` with ``headers`` (plus Host and Content-Length) and ``body``;
        return the complete answer, decoded. Reconnects when the connection is closed."""
        if self._setup_error is not None:  # a fresh copy: re-raising one grows its traceback
            raise type(self._setup_error)(*self._setup_error.args)
        head = self._head(headers) + b"content-length: %d\r\n\r\n" % len(body)
        self._interrupted = False
        try:
            first = await self._send(head + body)
            end = first.find(b"\r\n\r\n") if first.startswith(b"HTTP/1.1 2") else -1
            if end < 0:  # an interim 1xx first, a head in pieces, or any other answer
                self._buf += first
                raw, status, length, chunked, reusable, encoding = await self._read_head()
                answer = await self._body(status, length, chunked, encoding)
            else:  # the head came whole in the first bytes: nearly always
                raw = bytes(first[:end])
                status, length, chunked, reusable, encoding = scan_head(raw)
                answer = bytes(first[end + 4 :])
                if length != len(answer) or status != 200 or encoding is not None:
                    self._buf += answer  # not (or not only) the whole plain body
                    answer = await self._body(status, length, chunked, encoding)
                elif length > self._cap:
                    raise ResponseTooLarge(_over_cap(length, self._cap))
            if self._buf:  # bytes nobody asked for: the framing cannot be trusted
                reusable = False
        except BaseException:
            self._close()
            raise
        if not reusable:
            self._close()
        return HttpReply(status, LazyHeaders(raw), answer)

    async def _body(
        self, status: int, length: int | None, chunked: bool, encoding: bytes | None
    ) -> bytes:
        """The body of an answer whose head was read, decoded (closes the connection
        when the server's closing frames it)."""
        if status == 407 and self._proxy is not None:
            raise ProxyRejectedError(
                f"{self._proxy.label} (from {self._proxy.source}) answered 407 Proxy "
                f"Authentication Required: check the user:password in {self._proxy.source}"
            )
        if status in _NO_BODY_STATUSES:
            answer = b""
        elif chunked:
            answer = await self._read_chunked()
        elif length is not None:
            if length > self._cap:
                raise ResponseTooLarge(_over_cap(length, self._cap))
            answer = await self._read_exact(length)
        else:
            answer = await self._read_to_close()
        if encoding is not None:
            answer = decode_body(answer, encoding, self._cap)
        return answer

    async def aclose(self) -> None:
        """Close the connection (idempotent; the next ``post`` reconnects)."""
        self._close()

    def interrupt(self) -> None:
        """End the request in progress from another task, at once: a connect is
        cancelled, an open socket is closed (trio wakes a send or receive waiting on it,
        which fails with WriteError/ReadError). The next ``post`` reconnects.

        This is how a Worker bounds an attempt by TIMEOUT_S without a cancel scope per
        request (see ``actors/worker.py``)."""
        self._interrupted = True
        if self._connecting is not None:
            self._connecting.cancel()
        self._close()

    def _head(self, headers: Sequence[tuple[bytes, bytes]]) -> bytes:
        # A backend sends the same header tuple every time: join it once.
        if headers is not self._head_for:
            lines = [self._prefix]
            for name, value in headers:
                if b"\r" in name + value or b"\n" in name + value or b":" in name:
                    raise LocalProtocolError(f"invalid header {name!r}")
                lines.append(name + b": " + value + b"\r\n")
            self._head_prefix = b"".join(lines)
            self._head_for = headers
        return self._head_prefix

    async def _send(self, data: bytes) -> bytes | bytearray:
        """Send the request and return the first bytes of the answer (the buffer is
        empty between answers).

        A reused connection that yields nothing (the send fails, or EOF/reset before any
        byte of the answer) had been closed by the server as the request went out: send
        it again at once on a fresh connection. A fresh connection doing the same is the
        server's failure."""
        reused = self._stream is not None and not self._went_stale()
        first: bytes | bytearray
        while True:
            if not reused:
                self._close()
                await self._connect()
            stream = self._stream
            if stream is None:
                raise WriteError("connection interrupted")
            self.requests += 1
            try:
                await stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                if not reused or self._interrupted:
                    raise WriteError(reason(exc)) from exc
                first = b""
            else:
                try:
                    first = await self._receive(answer=True)
                except ReadError:
                    if not reused or self._interrupted:
                        raise
                    first = b""
            if first:
                return first
            if not reused:
                raise RemoteProtocolError("Server disconnected without sending a response.")
            reused = False
            self.resent += 1
            _log.debug("%s:%d closed a reused connection: sending again", self._host, self._port)

    # -- connection -------------------------------------------------------------------

    async def _connect(self) -> None:
        _log.debug("connecting to %s:%d (via %s)", self._host, self._port, self._proxy)
        # DNS runs in a thread and connect() is not a socket we own yet: interrupt()
        # can only stop them through a cancel scope (one per connection, not per request).
        self.connects += 1
        with trio.CancelScope() as scope:
            self._connecting = scope
            try:
                sock, stream = await dial(
                    self._host,
                    self._port,
                    context=self._ssl_context,
                    origin_tls=self._origin_tls,
                    trust=self._trust,
                    proxy=self._proxy,
                )
            finally:
                self._connecting = None
        if scope.cancel_called:  # even if the connect won the race: interrupt() wins
            if not scope.cancelled_caught:
                sock.close()
            raise ConnectError(f"connect to {self._host}:{self._port} interrupted")
        self._sock, self._stream = sock, stream
        self._idle_poll = select.poll()  # one per socket: poll(0) is ~1 µs, select ~2 µs
        self._idle_poll.register(sock, select.POLLIN)

    def _went_stale(self) -> bool:
        """An idle keep-alive socket that is readable was closed by the server (EOF)
        or carries bytes nobody asked for (also already taken into TLS's buffer):
        either way it cannot be reused."""
        assert self._idle_poll is not None
        stream = self._stream
        return bool(self._idle_poll.poll(0)) or (type(stream) is TlsSocket and stream.buffered)

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
