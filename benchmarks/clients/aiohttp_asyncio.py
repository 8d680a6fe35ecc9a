"""Baseline: ``aiohttp.ClientSession`` under asyncio, one task per request behind an
``asyncio.Semaphore`` — the common hand-written batch client. The connector limit is
the concurrency."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import aiohttp

from benchmarks.clients import chat_payload

LOOP = "asyncio"


class _Client:
    def __init__(self, http: aiohttp.ClientSession, url: str, concurrency: int) -> None:
        self._http = http
        self._url = url
        self._concurrency = concurrency

    async def run(self, ids: range) -> tuple[int, int]:
        counts = [0, 0]  # succeeded, failed
        gate = asyncio.Semaphore(self._concurrency)

        async def one(i: int) -> None:
            async with gate:
                try:
                    async with self._http.post(self._url, json=chat_payload(i)) as response:
                        data = await response.json()
                        text = data["choices"][0]["message"]["content"]
                        ok = response.status == 200 and isinstance(text, str)
                except (aiohttp.ClientError, ValueError, LookupError, TypeError):
                    ok = False
            counts[0 if ok else 1] += 1

        async with asyncio.TaskGroup() as group:
            for i in ids:
                group.create_task(one(i))
        return counts[0], counts[1]


@asynccontextmanager
async def open_client(
    base_url: str, concurrency: int, *, timeout_s: float = 60.0
) -> AsyncIterator[_Client]:
    """One session whose connector holds ``concurrency`` connections; ``timeout_s`` per
    request (seconds). No retries: the healthy-path baseline."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as http:
        yield _Client(http, base_url.rstrip("/") + "/chat/completions", concurrency)
