"""minimallm's batch runner under trio: ``await backend.run_batched(requests)`` with
MAX_OUTSTANDING = concurrency, ``num_workers`` twice that (the defaults' ratio),
heartbeat off, never aborting.

``prepare(ids)`` builds the request list before the timed part, so only the batch is
timed; ``run`` also reports how many answers came from the prompt cache. A batch
returns its results at the end, so a run cut short reports no counts of its own (the
benchmark then reads the server's).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks.clients._minimallm_common import bench_config, make_request
from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, OpenAIMinimaLlm

LOOP = "trio"


class _Client:
    def __init__(self, backend: OpenAIMinimaLlm) -> None:
        self._backend = backend
        self._prepared: tuple[range, list[MinimaLlmRequest]] | None = None

    def prepare(self, ids: range) -> None:
        """Build the requests for ``ids`` now (untimed); ``run(ids)`` will use them."""
        self._prepared = (ids, [make_request(i) for i in ids])

    async def run(self, ids: range) -> tuple[int, int, dict[str, Any]]:
        if self._prepared is not None and self._prepared[0] == ids:
            reqs = self._prepared[1]
        else:
            reqs = [make_request(i) for i in ids]
        results = await self._backend.run_batched(reqs)
        ok = sum(isinstance(r, MinimaLlmResponse) for r in results)
        cached = sum(isinstance(r, MinimaLlmResponse) and r.cached for r in results)
        failed_attempts = sum(r.attempts for r in results if isinstance(r, MinimaLlmFailure))
        return ok, len(ids) - ok, {"cached": cached, "failed_attempts": failed_attempts}


@asynccontextmanager
async def open_client(
    base_url: str, concurrency: int, cache_dir: str | None = None, **settings: Any
) -> AsyncIterator[_Client]:
    """A backend whose batch settings match the other rows (prompt cache in
    ``cache_dir`` if given, none otherwise) and the scenario's settings."""
    config = bench_config(base_url, concurrency, cache_dir, **settings)
    async with OpenAIMinimaLlm(config) as backend:
        yield _Client(backend)
