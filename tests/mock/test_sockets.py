"""The mock's own listeners and streams (``minimallm.mock.sockets``), on real loopback
sockets: what a handler relies on of a trio stream, and its errors."""

from __future__ import annotations

import errno
import socket
import struct

import pytest
import trio
import trio.testing

from minimallm.mock.sockets import ServerListener, ServerStream, open_listeners


async def _pair() -> tuple[ServerListener, trio.SocketStream, ServerStream]:
    [listener] = await open_listeners("127.0.0.1", 0)
    port = listener.socket.getsockname()[1]
    client = await trio.open_tcp_stream("127.0.0.1", port)
    server = await listener.accept()
    return listener, client, server


async def test_a_request_and_its_answer_then_eof() -> None:
    listener, client, server = await _pair()
    async with listener, client, server:
        await client.send_all(b"ping")
        assert await server.receive_some(100) == b"ping"
        await server.send_all(b"pong")
        assert await client.receive_some(100) == b"pong"
        await client.send_eof()
        assert await server.receive_some(100) == b""


async def test_a_large_answer_arrives_whole_while_the_client_reads_slowly() -> None:
    listener, client, server = await _pair()
    payload = bytes(range(256)) * (32 * 1024)  # 8 MiB: more than the socket buffers hold
    received = bytearray()
    async with listener, client, server, trio.open_nursery() as nursery:
        nursery.start_soon(server.send_all, payload)
        while len(received) < len(payload):
            received += await client.receive_some(4096)
    assert received == payload


async def test_a_client_that_resets_is_a_broken_resource() -> None:
    listener, client, server = await _pair()
    async with listener, server:
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        await client.aclose()  # an RST, not a FIN
        with pytest.raises(trio.BrokenResourceError):
            await server.receive_some(100)
        with pytest.raises(trio.BrokenResourceError):
            for _ in range(10):  # the first send may still be taken by the kernel
                await server.send_all(b"x" * 65536)


async def test_closing_wakes_a_task_waiting_on_the_stream() -> None:
    listener, client, server = await _pair()
    async with listener, client:
        failed: list[BaseException] = []

        async def watch() -> None:
            try:
                await server.receive_some(100)
            except trio.ClosedResourceError as exc:
                failed.append(exc)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch)
            await trio.testing.wait_all_tasks_blocked()
            await server.aclose()
        assert len(failed) == 1
        with pytest.raises(trio.ClosedResourceError):
            await server.receive_some(100)
        with pytest.raises(trio.ClosedResourceError):
            await server.send_all(b"late")
        await server.aclose()  # idempotent


async def test_receiving_yields_even_when_bytes_are_already_there() -> None:
    """A client that pipelines without pause cannot keep the server from its other
    connections: every receive is a checkpoint."""
    listener, client, server = await _pair()
    async with listener, client, server:
        await client.send_all(b"GET / HTTP/1.1\r\n\r\n" * 100)
        await trio.testing.wait_all_tasks_blocked()
        with trio.testing.assert_checkpoints():
            assert await server.receive_some(10)


async def test_a_closed_listener_refuses_connections() -> None:
    [listener] = await open_listeners("127.0.0.1", 0)
    port = listener.socket.getsockname()[1]
    await listener.aclose()
    with pytest.raises(OSError):
        await trio.open_tcp_stream("127.0.0.1", port)
    with pytest.raises(trio.ClosedResourceError):
        await listener.accept()
    await listener.aclose()  # idempotent


async def test_serve_listeners_runs_a_handler_per_connection() -> None:
    listeners = await open_listeners("127.0.0.1", 0)
    port = listeners[0].socket.getsockname()[1]

    async def echo(stream: ServerStream) -> None:
        while data := await stream.receive_some(100):
            await stream.send_all(data.upper())

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, echo, listeners)
        for word in (b"one", b"two", b"three"):
            async with await trio.open_tcp_stream("127.0.0.1", port) as client:
                await client.send_all(word)
                assert await client.receive_some(100) == word.upper()
        nursery.cancel_scope.cancel()


async def test_a_cancelled_send_sends_nothing() -> None:
    listener, client, server = await _pair()
    async with listener, client, server:
        with trio.CancelScope() as scope:
            scope.cancel()
            await server.send_all(b"late answer")
        assert scope.cancelled_caught
        await server.send_all(b"next")
        assert await client.receive_some(100) == b"next"


class _AbortedOnce(socket.socket):
    """A listening socket whose first accept fails as a connection reset before it was
    accepted does on BSD."""

    aborted = False

    def accept(self) -> tuple[socket.socket, object]:
        if not self.aborted:
            self.aborted = True
            raise ConnectionAbortedError(errno.ECONNABORTED, "Software caused connection abort")
        return super().accept()


async def test_accept_skips_a_connection_lost_before_it_was_accepted() -> None:
    [bound] = await open_listeners("127.0.0.1", 0)
    listener = ServerListener(_AbortedOnce(fileno=bound.socket.detach()))
    port = listener.socket.getsockname()[1]
    async with listener, await trio.open_tcp_stream("127.0.0.1", port) as client:
        server = await listener.accept()
        assert isinstance(listener.socket, _AbortedOnce) and listener.socket.aborted
        async with server:
            await client.send_all(b"still served")
            assert await server.receive_some(100) == b"still served"


class _ClosedUnderfoot(socket.socket):
    """A connection closed by another task just as this one woke to read it."""

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        raise OSError(errno.EBADF, "Bad file descriptor")


async def test_a_socket_closed_as_a_task_wakes_is_closed_not_broken() -> None:
    listener, client, server = await _pair()
    async with listener, client:
        stream = ServerStream(_ClosedUnderfoot(fileno=server._sock.detach()))
        async with stream:
            await client.send_all(b"x")
            with pytest.raises(trio.ClosedResourceError):
                await stream.receive_some(100)
