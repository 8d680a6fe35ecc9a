"""Peer: openai-python's ``AsyncOpenAI`` behind an ``asyncio.Semaphore(concurrency)``,
with its own retries (``max_retries = max_attempts - 1``; 0 attempts: 1,000 retries)
and ``timeout=timeout_s`` (seconds; openai-python applies it to each phase of an
attempt: connect, write, read). openai-python retries 408, 409, 429, 5xx and connection
errors and timeouts, honours ``retry-after-ms``/``Retry-After`` up to 60 s and otherwise
backs off from 0.5 s to 8 s with jitter. It has no pacing (``rpm`` must be 0).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import openai

from benchmarks.clients import PROMPT_MODEL

LOOP = "asyncio"


class _Client:
    def __init__(self, api: openai.AsyncOpenAI, concurrency: int) -> None:
        self._api = api
        self._concurrency = concurrency
        self.ok = self.failed = 0

    def progress(self) -> dict[str, Any]:
        """Counts so far (read when the run is cut short)."""
        return {"ok": self.ok, "failed": self.failed}

    async def _send(self, i: int) -> bool:
        try:
            answer = await self._api.chat.completions.create(
                model=PROMPT_MODEL, messages=[{"role": "user", "content": f"question {i}"}]
            )
            return isinstance(answer.choices[0].message.content, str)
        # A malformed 200 surfaces as a decoding or validation error, not an APIError.
        except (openai.OpenAIError, ValueError, LookupError, TypeError, AttributeError):
            return False

    async def run(self, ids: range) -> tuple[int, int]:
        self.ok = self.failed = 0
        gate = asyncio.Semaphore(self._concurrency)

        async def one(i: int) -> None:
            async with gate:
                ok = await self._send(i)
            if ok:
                self.ok += 1
            else:
                self.failed += 1

        async with asyncio.TaskGroup() as group:
            for i in ids:
                group.create_task(one(i))
        return self.ok, self.failed


@asynccontextmanager
async def open_client(
    base_url: str,
    concurrency: int,
    *,
    max_attempts: int = 6,
    timeout_s: float = 60.0,
    rpm: int = 0,
) -> AsyncIterator[_Client]:
    """One ``AsyncOpenAI`` client (its default connection pool holds up to 1,000)."""
    if rpm:
        raise ValueError("openai-python has no pacing: run this row with rpm=0")
    retries = 1000 if max_attempts == 0 else max_attempts - 1
    async with openai.AsyncOpenAI(
        base_url=base_url, api_key="sk-bench", max_retries=retries, timeout=timeout_s
    ) as api:
        yield _Client(api, concurrency)
