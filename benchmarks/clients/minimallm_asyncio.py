"""minimallm under asyncio (through the bridge thread): ``concurrency`` asyncio tasks,
each looping ``await backend.generate``."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

from clients._minimallm_common import bench_config, make_request
from minimallm._backend import OpenAIMinimaLlm
from minimallm._types import MinimaLlmResponse

LOOP = "asyncio"


class _Client:
    def __init__(self, backend: OpenAIMinimaLlm, concurrency: int) -> None:
        self._backend = backend
        self._concurrency = concurrency

    async def run(self, ids: range) -> tuple[int, int]:
        counts = [0, 0]  # succeeded, failed
        shared: Iterator[int] = iter(ids)  # each task pulls its next id

        async def loop() -> None:
            for i in shared:
                result = await self._backend.generate(make_request(i))
                counts[0 if isinstance(result, MinimaLlmResponse) else 1] += 1

        async with asyncio.TaskGroup() as group:
            for _ in range(min(self._concurrency, len(ids))):
                group.create_task(loop())
        return counts[0], counts[1]


@asynccontextmanager
async def open_client(base_url: str, concurrency: int) -> AsyncIterator[_Client]:
    """A backend with MAX_OUTSTANDING = concurrency and RPM = 0."""
    async with OpenAIMinimaLlm(bench_config(base_url, concurrency)) as backend:
        yield _Client(backend, concurrency)
