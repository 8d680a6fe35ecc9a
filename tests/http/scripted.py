"""Scripted loopback HTTP servers for the client's tests: each connection runs a handler
that reads requests and writes raw answers, byte for byte as the test says."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import trio

from minimallm._http.connection import Http11Connection

Handler = Callable[[trio.SocketStream, int], Awaitable[None]]
HEADERS = ((b"content-type", b"application/json"), (b"authorization", b"Bearer k"))


class Peer:
    """What the scripted server saw."""

    def __init__(self) -> None:
        self.connections = 0
        self.requests: list[tuple[bytes, bytes]] = []
        self.closed_by_client = 0


@asynccontextmanager
async def serve(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, Peer]]:
    """A loopback server running ``handler(stream, connection_index)`` per connection."""
    peer = Peer()
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]

    async def on_connection(stream: trio.SocketStream) -> None:
        index = peer.connections
        peer.connections += 1
        if ssl_context is None:
            await handler(stream, index)
        else:
            tls = trio.SSLStream(stream, ssl_context, server_side=True, https_compatible=True)
            try:
                await handler(tls, index)  # type: ignore[arg-type]
            except trio.BrokenResourceError:
                peer.closed_by_client += 1  # e.g. a client that refused our certificate

    scheme = "https" if ssl_context else "http"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(trio.serve_listeners, on_connection, listeners)
        yield f"{scheme}://127.0.0.1:{port}/v1/chat/completions?x=1", peer
        nursery.cancel_scope.cancel()


async def read_request(stream: trio.abc.Stream, peer: Peer, buf: bytearray) -> bool:
    """Read one request into ``peer.requests``; False on EOF."""
    while b"\r\n\r\n" not in buf:
        data = await stream.receive_some(65536)
        if not data:
            peer.closed_by_client += 1
            return False
        buf += data
    end = buf.index(b"\r\n\r\n")
    head = bytes(buf[:end])
    del buf[: end + 4]
    length = next(
        int(line.split(b":")[1])
        for line in head.split(b"\r\n")
        if line.startswith(b"content-length")
    )
    while len(buf) < length:
        buf += await stream.receive_some(65536)
    peer.requests.append((head, bytes(buf[:length])))
    del buf[:length]
    return True


def answering(*answers: bytes, peer_box: list[Peer]) -> Handler:
    """Answer each request on a connection with the next raw answer, then wait for EOF."""

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        for answer in answers:
            if not await read_request(stream, peer_box[0], buf):
                return
            await stream.send_all(answer)
        await read_request(stream, peer_box[0], buf)

    return handler


def ok(body: bytes = b'{"a":1}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n%s\r\n%s" % (len(body), extra, body)


@asynccontextmanager
async def scripted(*answers: bytes) -> AsyncIterator[tuple[Http11Connection, Peer]]:
    box: list[Peer] = []
    async with serve(answering(*answers, peer_box=box)) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        try:
            yield conn, peer
        finally:
            await conn.aclose()
