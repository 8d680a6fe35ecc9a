"""minimallm under trio: ``concurrency`` tasks, each looping ``await backend.generate``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import trio

from benchmarks.clients._minimallm_common import bench_config, make_request
from minimallm import MinimaLlmFailure, MinimaLlmResponse, OpenAIMinimaLlm

LOOP = "trio"


class _Client:
    def __init__(self, backend: OpenAIMinimaLlm, concurrency: int) -> None:
        self._backend = backend
        self._concurrency = concurrency
        self.ok = self.failed = self.failed_attempts = 0

    def progress(self) -> dict[str, Any]:
        """Counts so far (read when the run is cut short)."""
        return {"ok": self.ok, "failed": self.failed}

    async def run(self, ids: range) -> tuple[int, int, dict[str, Any]]:
        self.ok = self.failed = self.failed_attempts = 0
        shared: Iterator[int] = iter(ids)  # each task pulls its next id

        async def loop() -> None:
            for i in shared:
                result = await self._backend.generate(make_request(i))
                if isinstance(result, MinimaLlmResponse):
                    self.ok += 1
                else:
                    self.failed += 1
                    if isinstance(result, MinimaLlmFailure):
                        self.failed_attempts += result.attempts

        async with trio.open_nursery() as nursery:
            for _ in range(min(self._concurrency, len(ids))):
                nursery.start_soon(loop)
        return self.ok, self.failed, {"failed_attempts": self.failed_attempts}


@asynccontextmanager
async def open_client(base_url: str, concurrency: int, **settings: Any) -> AsyncIterator[_Client]:
    """A backend with MAX_OUTSTANDING = concurrency and the scenario's settings (rpm,
    max_attempts, timeout_s)."""
    async with OpenAIMinimaLlm(bench_config(base_url, concurrency, **settings)) as backend:
        yield _Client(backend, concurrency)
