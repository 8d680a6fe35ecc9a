"""Diagnostic floor, not a usable client: ``concurrency`` trio tasks, each owning one
``trio.SocketStream`` and speaking the least HTTP/1.1 that works with the mock server
(one write per request, Content-Length bodies only, no chunking, no reconnects). It
shows what trio's sockets and scheduler cost by themselves, so the gap to
``httpcore-trio`` is the HTTP library's share."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import trio

from benchmarks.clients import chat_payload

LOOP = "trio"


async def _read_response(stream: trio.SocketStream, buf: bytearray) -> tuple[int, bytes]:
    """(status, body) of the next response; leftover bytes stay in ``buf``."""
    while (end := buf.find(b"\r\n\r\n")) < 0:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    head = bytes(buf[:end]).decode("latin-1").split("\r\n")
    length = 0
    for line in head[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    del buf[: end + 4]
    while len(buf) < length:
        chunk = await stream.receive_some(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buf += chunk
    body = bytes(buf[:length])
    del buf[:length]
    return int(head[0].split()[1]), body


class _Client:
    def __init__(self, host: str, port: int, path: str, concurrency: int) -> None:
        self._host, self._port, self._path = host, port, path
        self._concurrency = concurrency
        self.streams: dict[int, trio.SocketStream] = {}

    async def run(self, ids: range) -> tuple[int, int]:
        counts = [0, 0]  # succeeded, failed
        shared: Iterator[int] = iter(ids)  # each task pulls its next id
        prefix = (
            f"POST {self._path} HTTP/1.1\r\nHost: {self._host}:{self._port}\r\n"
            "Content-Type: application/json\r\nAccept: application/json\r\n"
        ).encode()

        async def loop(k: int) -> None:
            if k not in self.streams:
                self.streams[k] = await trio.open_tcp_stream(self._host, self._port)
            stream, buf = self.streams[k], bytearray()
            for i in shared:
                body = json.dumps(chat_payload(i)).encode()
                await stream.send_all(b"%sContent-Length: %d\r\n\r\n%s" % (prefix, len(body), body))
                status, data = await _read_response(stream, buf)
                text = json.loads(data)["choices"][0]["message"]["content"]
                counts[0 if status == 200 and isinstance(text, str) else 1] += 1

        async with trio.open_nursery() as nursery:
            for k in range(min(self._concurrency, len(ids))):
                nursery.start_soon(loop, k)
        return counts[0], counts[1]


@asynccontextmanager
async def open_client(base_url: str, concurrency: int) -> AsyncIterator[_Client]:
    """Connections open lazily, one per task, and close at the end."""
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None, base_url
    client = _Client(
        url.hostname, url.port, url.path.rstrip("/") + "/chat/completions", concurrency
    )
    try:
        yield client
    finally:
        for stream in client.streams.values():
            await stream.aclose()
