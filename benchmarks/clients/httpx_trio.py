"""Baseline: raw ``httpx.AsyncClient`` under trio, one task per request behind a
``trio.Semaphore`` — what a user would write by hand. The pool is sized to the
concurrency so the semaphore, not the pool, is the limit."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import trio

from benchmarks.clients import chat_payload

LOOP = "trio"


class _Client:
    def __init__(self, http: httpx.AsyncClient, url: str, concurrency: int) -> None:
        self._http = http
        self._url = url
        self._concurrency = concurrency

    async def run(self, ids: range) -> tuple[int, int]:
        counts = [0, 0]  # succeeded, failed
        gate = trio.Semaphore(self._concurrency)

        async def one(i: int) -> None:
            async with gate:
                try:
                    response = await self._http.post(self._url, json=chat_payload(i))
                    text = response.json()["choices"][0]["message"]["content"]
                    ok = response.status_code == 200 and isinstance(text, str)
                except (httpx.HTTPError, ValueError, LookupError, TypeError):
                    ok = False
            counts[0 if ok else 1] += 1

        async with trio.open_nursery() as nursery:
            for i in ids:
                nursery.start_soon(one, i)
        return counts[0], counts[1]


@asynccontextmanager
async def open_client(base_url: str, concurrency: int) -> AsyncIterator[_Client]:
    """One shared client whose pool holds ``concurrency`` connections."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(limits=limits, timeout=60.0) as http:
        yield _Client(http, base_url.rstrip("/") + "/chat/completions", concurrency)
