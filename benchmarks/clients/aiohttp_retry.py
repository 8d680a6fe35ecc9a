"""Peer: a plain aiohttp loop with a retry, the way a competent user writes it.

One task per request behind an ``asyncio.Semaphore(concurrency)``; each attempt has its
own timeout (``timeout_s``, seconds). Retried: 408, 409, 425, 429, 500, 502, 503, 504,
connection errors, timeouts and a 200 whose body is not a completion (not JSON, no
``choices``), up to ``max_attempts`` attempts (0: until success). Before a retry it
waits the server's ``Retry-After`` (the standard header, in seconds) when given, capped
at 60 s, else ``min(30, 0.5 * 2**(n-1))`` seconds ±20 % (minimallm's default backoff, so
the comparison is about flow control, not the formula). It does not read OpenAI's
``retry-after-ms``: waiting exactly those few milliseconds with 128 requests
outstanding makes a thundering herd (measured: 7 times the attempts, half the requests
failed); openai-python, the other peer, does read it. With ``rpm`` > 0 it paces
attempts on a shared schedule, one every 60/rpm seconds.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp

from benchmarks.clients import chat_payload

LOOP = "asyncio"

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
BASE_BACKOFF_S = 0.5
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The server's ``Retry-After`` in seconds (capped), or None (absent, or an HTTP
    date, which this loop leaves to the backoff)."""
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(MAX_RETRY_AFTER_S, max(0.0, float(value)))
    except ValueError:
        return None


class _Client:
    def __init__(
        self,
        http: aiohttp.ClientSession,
        url: str,
        concurrency: int,
        *,
        max_attempts: int,
        timeout_s: float,
        rpm: int,
    ) -> None:
        self._http = http
        self._url = url
        self._concurrency = concurrency
        self._max_attempts = max_attempts
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._interval = 60.0 / rpm if rpm else 0.0
        self._next_slot = 0.0
        self._rng = random.Random(0)
        self.ok = self.failed = self.attempts = 0

    def progress(self) -> dict[str, Any]:
        """Counts so far (read when the run is cut short)."""
        return {"ok": self.ok, "failed": self.failed, "attempts": self.attempts}

    async def _pace(self) -> None:
        if not self._interval:
            return
        now = asyncio.get_running_loop().time()
        slot = max(now, self._next_slot)
        self._next_slot = slot + self._interval  # reserved before any await: no race
        if slot > now:
            await asyncio.sleep(slot - now)

    async def _attempt(self, payload: dict[str, object]) -> tuple[bool, bool, float | None]:
        """One attempt: (succeeded, worth retrying, server's wait in seconds or None)."""
        try:
            async with self._http.post(self._url, json=payload, timeout=self._timeout) as r:
                if r.status == 200:
                    data = await r.json(content_type=None)
                    return isinstance(data["choices"][0]["message"]["content"], str), False, None
                return False, r.status in RETRY_STATUSES, retry_after_s(r.headers)
        except (aiohttp.ClientError, TimeoutError, ValueError, LookupError, TypeError):
            return False, True, None

    async def _send(self, payload: dict[str, object]) -> bool:
        attempt = 0
        while True:
            attempt += 1
            await self._pace()
            self.attempts += 1
            ok, retry, wait = await self._attempt(payload)
            if ok or not retry or attempt == self._max_attempts:
                return ok
            if wait is None:
                wait = min(MAX_BACKOFF_S, BASE_BACKOFF_S * 2 ** (attempt - 1))
                wait = min(MAX_BACKOFF_S, wait * self._rng.uniform(0.8, 1.2))
            await asyncio.sleep(wait)

    async def run(self, ids: range) -> tuple[int, int, dict[str, Any]]:
        self.ok = self.failed = self.attempts = 0
        gate = asyncio.Semaphore(self._concurrency)

        async def one(i: int) -> None:
            async with gate:
                ok = await self._send(chat_payload(i))
            if ok:
                self.ok += 1
            else:
                self.failed += 1

        async with asyncio.TaskGroup() as group:
            for i in ids:
                group.create_task(one(i))
        return self.ok, self.failed, {"attempts": self.attempts}


@asynccontextmanager
async def open_client(
    base_url: str,
    concurrency: int,
    *,
    max_attempts: int = 6,
    timeout_s: float = 60.0,
    rpm: int = 0,
) -> AsyncIterator[_Client]:
    """One session whose connector holds ``concurrency`` connections."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:
        yield _Client(
            http,
            base_url.rstrip("/") + "/chat/completions",
            concurrency,
            max_attempts=max_attempts,
            timeout_s=timeout_s,
            rpm=rpm,
        )
