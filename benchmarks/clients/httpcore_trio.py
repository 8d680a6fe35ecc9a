"""Diagnostic baseline: minimallm's transport alone — ``concurrency`` trio tasks, each
owning one single-connection ``httpcore.AsyncConnectionPool`` (as each minimallm Worker
does) and looping over its share of requests. The gap between this row and
``minimallm-trio`` is what the actors, channels and result types cost."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpcore
import trio

from benchmarks.clients import chat_payload

LOOP = "trio"

_HEADERS = [(b"content-type", b"application/json"), (b"accept", b"application/json")]


class _Client:
    def __init__(self, pools: list[httpcore.AsyncConnectionPool], url: str) -> None:
        self._pools = pools
        self._url = httpcore.URL(url)

    async def run(self, ids: range) -> tuple[int, int]:
        counts = [0, 0]  # succeeded, failed
        shared: Iterator[int] = iter(ids)  # each task pulls its next id

        async def loop(pool: httpcore.AsyncConnectionPool) -> None:
            for i in shared:
                body = json.dumps(chat_payload(i)).encode()
                try:
                    response = await pool.request(
                        b"POST", self._url, headers=_HEADERS, content=body
                    )
                    text = json.loads(response.content)["choices"][0]["message"]["content"]
                    ok = response.status == 200 and isinstance(text, str)
                except (httpcore.NetworkError, httpcore.ProtocolError, ValueError, LookupError):
                    ok = False
                counts[0 if ok else 1] += 1

        async with trio.open_nursery() as nursery:
            for pool in self._pools[: len(ids)]:
                nursery.start_soon(loop, pool)
        return counts[0], counts[1]


@asynccontextmanager
async def open_client(base_url: str, concurrency: int) -> AsyncIterator[_Client]:
    """``concurrency`` one-connection pools."""
    pools = [
        httpcore.AsyncConnectionPool(max_connections=1, max_keepalive_connections=1, retries=0)
        for _ in range(concurrency)
    ]
    try:
        yield _Client(pools, base_url.rstrip("/") + "/chat/completions")
    finally:
        for pool in pools:
            await pool.aclose()
