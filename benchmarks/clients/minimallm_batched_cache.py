"""``run_batched`` under trio with the prompt cache on: the ``minimallm-batched`` row
plus ``cache_dir``. Without a ``cache_dir`` option it writes into a fresh temporary
directory (removed afterwards), so every run pays for writing every answer."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from benchmarks.clients import minimallm_batched

LOOP = "trio"


@asynccontextmanager
async def open_client(
    base_url: str, concurrency: int, cache_dir: str | None = None
) -> AsyncIterator[object]:
    """``minimallm_batched.open_client`` with a cache (``cache_dir``, or a fresh one)."""
    if cache_dir is not None:
        async with minimallm_batched.open_client(base_url, concurrency, cache_dir) as client:
            yield client
        return
    with tempfile.TemporaryDirectory(prefix="minimallm-bench-cache-") as fresh:
        async with minimallm_batched.open_client(base_url, concurrency, fresh) as client:
            yield client
