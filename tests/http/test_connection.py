"""The small HTTP/1.1 client against scripted loopback servers: framing, keep-alive,
server close, errors, cancellation, TLS."""

from __future__ import annotations

import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
import trio

from minimallm._http import errors
from minimallm._http.connection import Http11Connection
from minimallm._http.reply import LazyHeaders

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


async def test_request_on_the_wire_and_keep_alive() -> None:
    async with scripted(ok(b"one"), ok(b"two", b"x-id: 7\r\n")) as (conn, peer):
        reply = await conn.post(HEADERS, b"hello")
        assert (reply.status, dict(reply.headers), reply.body) == (
            200,
            {"content-length": "3"},
            b"one",
        )
        reply = await conn.post(HEADERS, b"again")
        assert (reply.status, reply.body, reply.headers["x-id"]) == (200, b"two", "7")
    assert peer.connections == 1
    head, body = peer.requests[0]
    assert head.split(b"\r\n") == [
        b"POST /v1/chat/completions?x=1 HTTP/1.1",
        b"host: 127.0.0.1:" + head.split(b":")[2].split(b"\r")[0],
        b"content-type: application/json",
        b"authorization: Bearer k",
        b"content-length: 5",
    ]
    assert body == b"hello" and peer.requests[1][1] == b"again"


async def test_chunked_answer_with_extension_and_trailer() -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"4;ext=1\r\nWiki\r\n6\r\npedia \r\nE\r\nin \r\n\r\nchunks.\r\n0\r\nx-t: 1\r\n\r\n"
    )
    async with scripted(answer, ok(b"next")) as (conn, peer):
        assert (await conn.post(HEADERS, b"x")).body == b"Wikipedia in \r\n\r\nchunks."
        assert (await conn.post(HEADERS, b"y")).body == b"next"
    assert peer.connections == 1  # the chunked answer left the connection reusable


async def test_interim_1xx_is_skipped_and_204_has_no_body() -> None:
    async with scripted(
        b"HTTP/1.1 100 Continue\r\n\r\n" + ok(b"a"), b"HTTP/1.1 204 No\r\n\r\n"
    ) as (
        conn,
        _,
    ):
        reply = await conn.post(HEADERS, b"x")
        assert (reply.status, reply.body) == (200, b"a")
        reply = await conn.post(HEADERS, b"x")
        assert (reply.status, reply.body) == (204, b"")


async def test_answer_framed_by_close_then_reconnect() -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        await read_request(stream, box[0], buf)
        await stream.send_all(b"HTTP/1.1 200 OK\r\n\r\nuntil close")
        await stream.aclose()

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        assert (await conn.post(HEADERS, b"x")).body == b"until close"
        assert (await conn.post(HEADERS, b"x")).body == b"until close"
        await conn.aclose()
    assert peer.connections == 2


@pytest.mark.parametrize(
    "first", [ok(b"a", b"Connection: close\r\n"), b"HTTP/1.0 200 OK\r\ncontent-length: 1\r\n\r\na"]
)
async def test_connection_close_and_http10_are_not_reused(first: bytes) -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        await read_request(stream, box[0], buf)
        await stream.send_all(first if index == 0 else ok(b"b"))
        await read_request(stream, box[0], buf)

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        assert (await conn.post(HEADERS, b"x")).body == b"a"
        assert (await conn.post(HEADERS, b"x")).body == b"b"
        await conn.aclose()
    assert peer.connections == 2


async def test_idle_connection_closed_by_the_server_is_replaced() -> None:
    box: list[Peer] = []
    closed = trio.Event()

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        await read_request(stream, box[0], buf)
        await stream.send_all(ok(b"c%d" % index))
        await stream.aclose()  # keep-alive advertised, but the server closes when idle
        closed.set()

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        assert (await conn.post(HEADERS, b"x")).body == b"c0"
        await closed.wait()  # on loopback the FIN is queued before close() returns
        assert (await conn.post(HEADERS, b"x")).body == b"c1"
        await conn.aclose()
    assert peer.connections == 2


BROKEN = [
    (b"", "Server disconnected without sending a response."),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nshort", "without sending complete"),
    (b"HTTP/1.1 200 OK\r\ncont", "inside the response head"),
    (b"HTTP/2 200 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 2x0 OK\r\n\r\n", "malformed status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length : 1\r\n\r\na", "malformed Content-Length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: -1\r\n\r\n", "bad Content-Length"),
    (b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab", "conflicting"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n", "bad chunk size"),
    (b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nabXY", "not followed by CRLF"),
    (b"HTTP/1.1 101 Switching\r\n\r\n", "101"),
]


@pytest.mark.parametrize(("answer", "message"), BROKEN)
async def test_broken_answers_are_remote_protocol_errors(answer: bytes, message: str) -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        await read_request(stream, box[0], bytearray())
        await stream.send_all(answer) if answer else None
        await stream.aclose()

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        with pytest.raises(errors.RemoteProtocolError, match=message):
            await conn.post(HEADERS, b"x")
        assert "closed" in repr(conn)


async def test_head_longer_than_the_limit_is_refused() -> None:
    huge = b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * 200_000 + b"\r\n\r\n"
    async with scripted(huge) as (conn, _):
        with pytest.raises(errors.RemoteProtocolError, match="longer than"):
            await conn.post(HEADERS, b"x")


async def test_reset_is_a_read_error() -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        await read_request(stream, box[0], bytearray())
        stream.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, b"\x01\0\0\0\0\0\0\0")
        await stream.aclose()  # linger 0: RST

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        with pytest.raises((errors.ReadError, errors.RemoteProtocolError)):
            await conn.post(HEADERS, b"x")


async def test_connect_refused_and_bad_scheme_and_bad_header() -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.ConnectError):
        await Http11Connection(f"http://127.0.0.1:{port}/").post(HEADERS, b"x")
    with pytest.raises(errors.UnsupportedProtocol):
        await Http11Connection("ftp://example.invalid/").post(HEADERS, b"x")
    with pytest.raises(errors.LocalProtocolError):
        await Http11Connection("http://127.0.0.1:1/").post(((b"x", b"a\r\nb"),), b"x")


async def test_cancelled_request_closes_the_connection() -> None:
    box: list[Peer] = []
    eof = trio.Event()

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        await read_request(stream, box[0], buf)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial")
        if not await read_request(stream, box[0], buf):
            eof.set()

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        with trio.move_on_after(0.2):
            await conn.post(HEADERS, b"x")
        assert "closed" in repr(conn)
        with trio.fail_after(5):
            await eof.wait()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not available to make a test certificate")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_tls_with_the_given_context_and_keep_alive(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(cert, key)
    client_ctx = ssl.create_default_context(cafile=str(cert))
    box: list[Peer] = []
    async with serve(answering(ok(b"s1"), ok(b"s2"), peer_box=box), server_ctx) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url, ssl_context=client_ctx)
        assert (await conn.post(HEADERS, b"x")).body == b"s1"
        assert (await conn.post(HEADERS, b"y")).body == b"s2"
        await conn.aclose()
        untrusted = Http11Connection(url, ssl_context=ssl.create_default_context())
        with pytest.raises(errors.TLSVerificationError, match="SSL_CERT_FILE="):
            await untrusted.post(HEADERS, b"x")
    assert peer.requests[1][1] == b"y"
    assert peer.connections == 2  # one kept alive, one refused at the handshake


def test_headers_are_parsed_only_when_read_with_folding_and_odd_lines() -> None:
    raw = (
        b"HTTP/1.1 429 Too Many\r\nRetry-After: 7\r\nX-Long: a\r\n  b\r\nodd line\r\n"
        b"X-Dup: 1\r\nx-dup: 2"
    )
    headers = LazyHeaders(raw)
    assert headers._decoded is None
    assert dict(headers) == {"retry-after": "7", "x-long": "a b", "x-dup": "2"}
    assert len(headers) == 3


async def test_interrupt_from_another_task_ends_a_waiting_request() -> None:
    box: list[Peer] = []
    eof, asked = trio.Event(), trio.Event()

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        await read_request(stream, box[0], buf)  # never answers
        asked.set()
        if not await read_request(stream, box[0], buf):
            eof.set()

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        async with trio.open_nursery() as nursery:

            async def interrupt_soon() -> None:
                await asked.wait()
                conn.interrupt()

            nursery.start_soon(interrupt_soon)
            with pytest.raises(errors.ReadError), trio.fail_after(5):
                await conn.post(HEADERS, b"x")
        with trio.fail_after(5):
            await eof.wait()  # the server saw the connection close
        assert "closed" in repr(conn)


async def test_interrupt_during_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    started = trio.Event()

    async def slow_connect(host: str, port: int) -> trio.SocketStream:
        started.set()
        await trio.sleep_forever()
        raise AssertionError("unreachable")

    monkeypatch.setattr(trio, "open_tcp_stream", slow_connect)
    conn = Http11Connection("http://example.invalid/v1")
    async with trio.open_nursery() as nursery:

        async def interrupt_when_connecting() -> None:
            await started.wait()
            conn.interrupt()

        nursery.start_soon(interrupt_when_connecting)
        with pytest.raises(errors.ConnectError, match="interrupted"), trio.fail_after(5):
            await conn.post(HEADERS, b"x")
