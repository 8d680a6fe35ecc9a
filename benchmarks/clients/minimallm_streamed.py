"""The 1,000,000-request memory row: minimallm's streaming results API,
``async with backend.stream_batched(requests) as results: async for index, result in
results``, over a lazy generator of requests (``total`` given for progress). Nothing
per request is kept here: results are counted and dropped."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

from benchmarks.clients._minimallm_common import bench_config, make_request
from minimallm import MinimaLlmRequest, MinimaLlmResponse, OpenAIMinimaLlm

LOOP = "trio"

STREAM_METHOD = "stream_batched"
"""The name of the streaming API on ``OpenAIMinimaLlm``."""


def available() -> bool:
    """True once ``OpenAIMinimaLlm`` has the streaming API."""
    return callable(getattr(OpenAIMinimaLlm, STREAM_METHOD, None))


def _lazy(ids: range) -> Iterator[MinimaLlmRequest]:
    return (make_request(i) for i in ids)


class _Client:
    def __init__(self, backend: OpenAIMinimaLlm) -> None:
        self._backend = backend
        self.ok = self.failed = 0

    def progress(self) -> dict[str, Any]:
        """Counts so far (read when the run is cut short)."""
        return {"ok": self.ok, "failed": self.failed}

    async def run(self, ids: range) -> tuple[int, int]:
        self.ok = self.failed = 0
        stream = getattr(self._backend, STREAM_METHOD)
        async with stream(_lazy(ids), total=len(ids)) as results:
            async for _index, result in results:
                if isinstance(result, MinimaLlmResponse):
                    self.ok += 1
                else:
                    self.failed += 1
        return self.ok, self.failed


@asynccontextmanager
async def open_client(base_url: str, concurrency: int, **settings: Any) -> AsyncIterator[_Client]:
    """A backend like ``minimallm-batched``'s; raises if the streaming API is missing."""
    if not available():
        raise RuntimeError(f"OpenAIMinimaLlm has no {STREAM_METHOD}() yet (see this module)")
    async with OpenAIMinimaLlm(bench_config(base_url, concurrency, **settings)) as backend:
        yield _Client(backend)
