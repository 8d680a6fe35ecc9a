"""ChatServer in this trio run on loopback, with a stub backend: what a drain does to
idle and busy connections."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import trio

from minimallm import MinimaLlmResponse
from minimallm.serve.server import ChatServer, ServeOptions


class StubBackend:
    """Answers every request after ``gate`` opens (at once when it is set)."""

    def __init__(self) -> None:
        self.cfg = SimpleNamespace(model="m")
        self.calls = 0
        self.gate = trio.Event()
        self.gate.set()

    async def generate(self, req: Any) -> MinimaLlmResponse:
        self.calls += 1
        await self.gate.wait()
        raw = {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}
        return MinimaLlmResponse(req.request_id, "ok", raw=raw)


def chat_request(keep_alive: bool = True) -> bytes:
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode()
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        + ("" if keep_alive else "connection: close\r\n")
        + "\r\n"
    )
    return head.encode() + body


async def read_all(stream: trio.SocketStream) -> bytes:
    data = b""
    while chunk := await stream.receive_some(65536):
        data += chunk
    return data


async def test_drain_closes_idle_connections_and_finishes_busy_ones() -> None:
    backend = StubBackend()
    server = ChatServer(backend, ServeOptions(port=0))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(server.run)
        used = await trio.open_tcp_stream(host, port)  # answered once, then idle
        await used.send_all(chat_request())
        first = await used.receive_some(65536)
        assert first.startswith(b"HTTP/1.1 200")
        silent = await trio.open_tcp_stream(host, port)  # never sends anything
        busy = await trio.open_tcp_stream(host, port)
        backend.gate = trio.Event()
        await busy.send_all(chat_request())
        await trio.testing.wait_all_tasks_blocked()
        assert backend.calls == 2

        server.drain()
        assert await read_all(used) == b""  # closed, nothing answered twice
        assert await read_all(silent) == b""
        backend.gate.set()
        answer = await read_all(busy)  # the request in progress is answered, then closed
        assert answer.startswith(b"HTTP/1.1 200") and b"connection: close" in answer
    # server.run returned once every connection was gone (the nursery could close)
    assert backend.calls == 2
    assert server.stats.connections == 0


async def test_a_failing_request_costs_one_answer_not_the_server() -> None:
    backend = StubBackend()

    async def broken(req: Any) -> MinimaLlmResponse:
        raise RuntimeError("a bug")

    backend.generate = broken  # type: ignore[method-assign]
    server = ChatServer(backend, ServeOptions(port=0))  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(server.run)
        stream = await trio.open_tcp_stream(host, port)
        await stream.send_all(chat_request(keep_alive=False))
        answer = await read_all(stream)
        assert answer.startswith(b"HTTP/1.1 500") and b"RuntimeError" in answer
        server.drain()
