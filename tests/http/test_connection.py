"""The small HTTP/1.1 client against scripted loopback servers: framing, keep-alive,
server close, errors, cancellation, TLS."""

from __future__ import annotations

import gzip
import shutil
import socket
import ssl
import subprocess
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import trio
from scripted import HEADERS, Peer, answering, ok, read_request, scripted, serve

from minimallm._http import errors
from minimallm._http.connection import Http11Connection
from minimallm._http.reply import LazyHeaders


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


async def test_a_body_larger_than_the_socket_buffer_is_sent_whole() -> None:
    """The kernel takes part of it at once, the rest as the server reads."""
    body = bytes(range(256)) * (16 << 10)  # 4 MiB
    async with scripted(ok(b"big"), ok(b"small")) as (conn, peer):
        assert (await conn.post(HEADERS, body)).body == b"big"
        assert (await conn.post(HEADERS, b"x")).body == b"small"
    assert peer.requests[0][1] == body and peer.requests[1][1] == b"x"


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


async def test_a_204_with_a_body_gives_no_body_and_is_not_reused() -> None:
    """The body after a 204 is bytes nobody asked for, even when it came whole."""
    async with scripted(b"HTTP/1.1 204 No\r\ncontent-length: 3\r\n\r\nabc", ok(b"b")) as (
        conn,
        peer,
    ):
        reply = await conn.post(HEADERS, b"x")
        assert (reply.status, reply.body) == (204, b"")
        assert "closed" in repr(conn)
    assert peer.connections == 1


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


# -- a reused connection the server closed as the request went out ----------------------


def closing_after_first(
    how: str,
) -> tuple[list[Peer], Callable[[trio.SocketStream, int], Awaitable[None]]]:
    """Connection 0 answers one request, then reads the next and goes away without a
    byte (``how``: "eof" or "reset"); later connections answer everything."""
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        while await read_request(stream, box[0], buf):
            if index == 0 and len(box[0].requests) > 1:
                if how == "reset":
                    linger = b"\x01\0\0\0\0\0\0\0"
                    stream.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_LINGER, linger)
                await stream.aclose()
                return
            await stream.send_all(ok(b"c%d" % index))

    return box, handler


@pytest.mark.parametrize("how", ["eof", "reset"])
async def test_a_reused_connection_closed_under_the_request_is_resent_at_once(how: str) -> None:
    box, handler = closing_after_first(how)
    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        assert (await conn.post(HEADERS, b"first")).body == b"c0"
        assert (await conn.post(HEADERS, b"second")).body == b"c1"
        await conn.aclose()
    assert [body for _, body in peer.requests] == [b"first", b"second", b"second"]
    assert (peer.connections, conn.resent, conn.connects) == (2, 1, 2)


async def test_a_fresh_connection_that_answers_nothing_is_not_resent() -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        await read_request(stream, box[0], bytearray())
        await stream.aclose()

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        with pytest.raises(errors.RemoteProtocolError, match="without sending a response"):
            await conn.post(HEADERS, b"x")
    assert (peer.connections, len(peer.requests), conn.resent) == (1, 1, 0)


async def test_a_reused_connection_cut_inside_the_answer_is_not_resent() -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        await read_request(stream, box[0], buf)
        await stream.send_all(ok(b"a"))
        await read_request(stream, box[0], buf)
        await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-le")  # the answer began
        await stream.aclose()

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        await conn.post(HEADERS, b"x")
        with pytest.raises(errors.RemoteProtocolError, match="inside the response head"):
            await conn.post(HEADERS, b"x")
    assert (peer.connections, conn.resent) == (1, 0)


async def test_an_interrupted_request_on_a_reused_connection_is_not_resent() -> None:
    box: list[Peer] = []
    asked = trio.Event()

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        await read_request(stream, box[0], buf)
        await stream.send_all(ok(b"a"))
        await read_request(stream, box[0], buf)  # never answered
        asked.set()
        await read_request(stream, box[0], buf)

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = Http11Connection(url)
        await conn.post(HEADERS, b"x")
        async with trio.open_nursery() as nursery:

            async def interrupt_when_asked() -> None:
                await asked.wait()
                conn.interrupt()

            nursery.start_soon(interrupt_when_asked)
            with pytest.raises(errors.ReadError), trio.fail_after(5):
                await conn.post(HEADERS, b"y")
    assert (peer.connections, conn.resent) == (1, 0)


# -- encodings and the size cap ---------------------------------------------------------

JSON = b'{"choices": [{"message": {"content": "hi"}}]}' * 20


def encoded(body: bytes, coding: bytes, *, chunked: bool = False) -> bytes:
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: " + coding + b"\r\n"
    if chunked:
        half = len(body) // 2
        chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (body[:half], body[half:]))
        return head + b"transfer-encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
    return head + b"content-length: %d\r\n\r\n" % len(body) + body


@pytest.mark.parametrize(
    "answer",
    [
        encoded(gzip.compress(JSON), b"gzip"),
        encoded(gzip.compress(JSON), b"GZip", chunked=True),
        encoded(gzip.compress(JSON[:300]) + gzip.compress(JSON[300:]), b"x-gzip"),
        encoded(zlib.compress(JSON), b"deflate"),
        encoded(zlib.compress(JSON)[2:-4], b"deflate"),  # raw deflate, as some servers send
        encoded(gzip.compress(zlib.compress(JSON)), b"deflate, gzip"),
        encoded(JSON, b"identity"),
    ],
)
async def test_encoded_answers_are_decoded_and_the_connection_kept(answer: bytes) -> None:
    async with scripted(answer, ok(b"next")) as (conn, peer):
        assert (await conn.post(HEADERS, b"x")).body == JSON
        assert (await conn.post(HEADERS, b"x")).body == b"next"
    assert peer.connections == 1


@pytest.mark.parametrize("coding", [b"br", b"zstd", b"gzip, br", b"compress"])
async def test_an_encoding_we_cannot_decode_is_named(coding: bytes) -> None:
    async with scripted(encoded(b"\x0b\x02\x80hello\x03", coding)) as (conn, _):
        with pytest.raises(errors.UnsupportedContentEncoding, match=coding.decode()):
            await conn.post(HEADERS, b"x")


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (encoded(gzip.compress(JSON)[:-9], b"gzip"), "cut short"),
        (encoded(b"not gzip at all", b"gzip"), "does not decode"),
        (encoded(b"not deflate at all", b"deflate"), "does not decode"),
    ],
)
async def test_a_body_that_does_not_decode_is_a_decoding_error(answer: bytes, message: str) -> None:
    async with scripted(answer) as (conn, _):
        with pytest.raises(errors.DecodingError, match=message):
            await conn.post(HEADERS, b"x")


CAP = 64 * 1024


def capped(url: str) -> Http11Connection:
    return Http11Connection(url, max_response_bytes=CAP)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 200000000\r\n\r\n", "Content-Length: 200000000"),
        (encoded(b"x" * (CAP + 1), b"identity", chunked=True), "chunked answer grew past"),
        (b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (CAP + 1), "framed by the server closing"),
        (encoded(gzip.compress(b" " * (CAP + 1)), b"gzip"), "decodes to more than"),
        (encoded(zlib.compress(b" " * 10 * CAP), b"deflate"), "decodes to more than"),
    ],
)
async def test_an_answer_over_the_cap_is_refused(answer: bytes, message: str) -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        await read_request(stream, box[0], bytearray())
        await stream.send_all(answer)
        await stream.aclose()

    async with serve(handler) as (url, peer):
        box.append(peer)
        conn = capped(url)
        with pytest.raises(errors.ResponseTooLarge, match=message), trio.fail_after(5):
            await conn.post(HEADERS, b"x")
        assert "closed" in repr(conn)


@pytest.mark.parametrize("cap", [10, 11])
async def test_a_small_cap_holds_for_an_answer_that_came_whole(cap: int) -> None:
    async with scripted(ok(b"x" * 11)) as (conn, _):
        conn._cap = cap  # as max_response_bytes=cap would
        if cap < 11:
            with pytest.raises(errors.ResponseTooLarge, match="Content-Length: 11"):
                await conn.post(HEADERS, b"x")
        else:
            assert (await conn.post(HEADERS, b"x")).body == b"x" * 11


async def test_an_answer_exactly_at_the_cap_is_accepted() -> None:
    body = b"x" * CAP
    box: list[Peer] = []
    async with serve(answering(ok(body), encoded(gzip.compress(body), b"gzip"), peer_box=box)) as (
        url,
        peer,
    ):
        box.append(peer)
        conn = capped(url)
        assert (await conn.post(HEADERS, b"x")).body == body
        assert (await conn.post(HEADERS, b"x")).body == body
        await conn.aclose()


async def test_connection_refused_names_host_and_port() -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(errors.ConnectError) as info:
        await Http11Connection(f"http://127.0.0.1:{port}/v1").post(HEADERS, b"x")
    assert str(info.value) == f"connection refused to 127.0.0.1:{port}"


async def test_an_unknown_host_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    async def unknown(host: str, port: int) -> trio.SocketStream:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(trio, "open_tcp_stream", unknown)
    with pytest.raises(errors.ConnectError) as info:
        await Http11Connection("http://no-such-host.invalid/v1").post(HEADERS, b"x")
    assert str(info.value) == "cannot resolve host no-such-host.invalid (Name or service not known)"
