"""Opening a connection: TCP to the origin or to a proxy, the CONNECT tunnel, TLS.

What comes back is the raw socket (to poll for a stale idle connection, and to close)
and the stream requests go over. Plain ``http`` without TLS anywhere gets
:class:`PlainSocket`, straight on the non-blocking socket; anything with TLS gets
trio's ``SSLStream`` (stacked twice for an ``https://`` proxy tunnelling to an
``https://`` endpoint).

Failures say who failed: ``connection refused to 127.0.0.1:8000``, ``proxy
127.0.0.1:8888 refused the connection (from HTTPS_PROXY)``, ``certificate verify
failed for host …`` (see :mod:`minimallm._http.tls`).
"""

from __future__ import annotations

import socket
import ssl

import trio

from minimallm._http.errors import ConnectError, ProxyError
from minimallm._http.proxy import Proxy, open_tunnel
from minimallm._http.tls import handshake_error

__all__ = ["PlainSocket", "dial"]


class PlainSocket:
    """The two stream operations a plain-``http`` request needs, straight on the
    non-blocking socket. ``receive_some`` waits for readability first, so it is a
    checkpoint like trio's; ``send_all`` returns without yielding when the kernel takes
    the whole request at once (it nearly always does): trio's SocketStream yields after
    every send, one task switch per request, measured ~11 µs of CPU with its error
    translation. Waits are trio's ``wait_readable``/``wait_writable``, so
    cancellation and ``notify_closing`` (how a connection is interrupted) work as for
    any trio socket."""

    __slots__ = ("_sock",)

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    async def send_all(self, data: bytes) -> None:
        """Send every byte of ``data``."""
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
        """Up to ``max_bytes`` once some arrived; b"" at EOF."""
        sock = self._sock
        while True:
            await trio.lowlevel.wait_readable(sock)
            try:
                return sock.recv(max_bytes)
            except BlockingIOError:  # a spurious wake-up
                continue


Opened = tuple["socket.socket | trio.socket.SocketType", "trio.abc.Stream | PlainSocket"]


async def dial(
    host: str,
    port: int,
    *,
    context: ssl.SSLContext | None,
    origin_tls: bool,
    trust: str,
    proxy: Proxy | None,
) -> Opened:
    """Connect to ``host:port`` (through ``proxy`` if given) and, if ``origin_tls``,
    shake hands with it; ``context`` serves TLS to the origin and to an ``https://``
    proxy, ``trust`` names what it trusts (for verification messages).
    Returns (socket, stream). Raises ConnectError, ProxyError or TLSVerificationError."""
    if proxy is None:
        tcp = await _open_tcp(host, port, None)
    else:
        tcp = await _open_tcp(proxy.host, proxy.port, proxy)
    try:
        stream: trio.abc.Stream = tcp
        if proxy is not None:
            if proxy.scheme == "https":
                assert context is not None, "an https:// proxy needs an SSLContext"
                stream = await _handshake(stream, context, proxy.host, proxy.port, trust)
            if origin_tls:
                await open_tunnel(stream, _authority(host, port), proxy)
        if origin_tls:
            assert context is not None, "an https:// endpoint needs an SSLContext"
            stream = await _handshake(stream, context, host, port, trust)
    except BaseException:
        tcp.socket.close()
        raise
    if stream is tcp:
        # trio made it non-blocking with TCP_NODELAY; keep the plain socket only.
        sock = socket.socket(fileno=tcp.socket.detach())
        return sock, PlainSocket(sock)
    return tcp.socket, stream


async def _handshake(
    stream: trio.abc.Stream, context: ssl.SSLContext, host: str, port: int, trust: str
) -> trio.SSLStream[trio.abc.Stream]:
    tls = trio.SSLStream(stream, context, server_hostname=host, https_compatible=True)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        raise handshake_error(exc, host, port, trust) from exc
    return tls


async def _open_tcp(host: str, port: int, proxy: Proxy | None) -> trio.SocketStream:
    try:
        return await trio.open_tcp_stream(host, port)
    except OSError as exc:
        if proxy is None:
            raise ConnectError(_connect_failure(exc, host, port, None)) from exc
        message = _connect_failure(exc, host, port, proxy.label)
        raise ProxyError(f"{message} (from {proxy.source})") from exc


def _connect_failure(exc: OSError, host: str, port: int, proxy: str | None) -> str:
    """What went wrong, naming who: trio's "all attempts to connect ... failed (N
    sub-exceptions)" is unpacked into the reason its attempts failed."""
    where = _authority(host, port)
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve {'the proxy ' if proxy else ''}host {host} ({exc.strerror})"
    errors: list[BaseException] = [exc]
    group = exc.__cause__
    if isinstance(group, BaseExceptionGroup):
        errors = list(group.exceptions)
    if all(isinstance(e, ConnectionRefusedError) for e in errors):
        return f"{proxy} refused the connection" if proxy else f"connection refused to {where}"
    if all(isinstance(e, TimeoutError) for e in errors):
        return (
            f"{proxy} did not accept the connection in time"
            if proxy
            else (f"connection to {where} timed out")
        )
    first = errors[0]
    reason = first.strerror if isinstance(first, OSError) and first.strerror else str(first)
    return f"cannot connect to {proxy or where}: {reason}"


def _authority(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
