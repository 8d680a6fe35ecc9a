"""Opening a connection: TCP to the origin or to a proxy, the CONNECT tunnel, TLS.

What comes back is the raw socket (to poll for a stale idle connection, and to close)
and the stream requests go over: a :class:`~minimallm._http.streams.PlainSocket` or
:class:`~minimallm._http.streams.TlsSocket` straight on the non-blocking socket (also
through a plain proxy's CONNECT tunnel), or, for an ``https://`` proxy, trio's
``SSLStream`` (stacked twice when it tunnels to an ``https://`` endpoint).

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
from minimallm._http.streams import PlainSocket, TlsSocket
from minimallm._http.tls import handshake_error

__all__ = ["Opened", "dial"]


Opened = tuple[
    "socket.socket | trio.socket.SocketType", "trio.abc.Stream | PlainSocket | TlsSocket"
]
"""(the socket to poll and close, the stream requests go over)."""


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
    authority = _authority(host, port)
    try:
        if proxy is not None and proxy.scheme == "https":
            # TLS to the proxy, and TLS inside that for an https endpoint: trio's
            # SSLStream stacks (a rare setup; it keeps trio's general machinery).
            assert context is not None, "an https:// proxy needs an SSLContext"
            stream = await _handshake(tcp, context, proxy.host, proxy.port, trust)
            if origin_tls:
                await open_tunnel(stream, authority, proxy)
                stream = await _handshake(stream, context, host, port, trust)
            return tcp.socket, stream
        if proxy is not None and origin_tls:
            await open_tunnel(tcp, authority, proxy)
    except BaseException:
        tcp.socket.close()
        raise
    # trio made it non-blocking with TCP_NODELAY; keep the plain socket only.
    sock = socket.socket(fileno=tcp.socket.detach())
    if not origin_tls:
        return sock, PlainSocket(sock)
    assert context is not None, "an https:// endpoint needs an SSLContext"
    tls = TlsSocket(sock, context, host)
    try:
        await tls.do_handshake()
    except OSError as exc:  # ssl.SSLError is one
        sock.close()
        raise handshake_error(exc, host, port, trust) from exc
    except BaseException:
        sock.close()
        raise
    return sock, tls


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
    # An ASCII name goes as bytes: as text, the socket module would run it through the
    # idna codec (importing encodings.idna and stringprep on a process's first dial).
    name = host.encode("ascii") if host.isascii() else host
    try:
        return await trio.open_tcp_stream(name, port)
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
