"""minimallm's batch runner under trio: ``await backend.run_batched(requests)`` with
``num_workers`` = MAX_OUTSTANDING = concurrency, heartbeat off, never aborting."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from clients._minimallm_common import bench_config, make_request
from minimallm._backend import OpenAIMinimaLlm
from minimallm._types import MinimaLlmResponse

LOOP = "trio"


class _Client:
    def __init__(self, backend: OpenAIMinimaLlm) -> None:
        self._backend = backend

    async def run(self, ids: range) -> tuple[int, int]:
        results = await self._backend.run_batched([make_request(i) for i in ids])
        ok = sum(isinstance(r, MinimaLlmResponse) for r in results)
        return ok, len(ids) - ok


@asynccontextmanager
async def open_client(base_url: str, concurrency: int) -> AsyncIterator[_Client]:
    """A backend whose batch settings match the other rows."""
    async with OpenAIMinimaLlm(bench_config(base_url, concurrency)) as backend:
        yield _Client(backend)
