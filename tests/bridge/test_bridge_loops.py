"""The bridge forgets every asyncio loop once the loop is gone."""

from __future__ import annotations

import asyncio
import gc
import weakref
from collections.abc import Callable

from minimallm import MinimaLlmRequest, MinimaLlmResponse
from minimallm._backend import OpenAIMinimaLlm
from minimallm.mock import MockServerThread


def test_every_asyncio_run_leaves_no_loop_behind(
    make_backend: Callable[..., OpenAIMinimaLlm], mock_server: MockServerThread
) -> None:
    backend = make_backend()
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def main(i: int) -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        req = MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"run {i}"}])
        assert isinstance(await backend.generate(req), MinimaLlmResponse)
        await backend.run_batched([req], progress=lambda line: None)

    for i in range(20):
        asyncio.run(main(i))
    backend.close_sync()
    gc.collect()
    alive = [ref for ref in loops if ref() is not None]
    assert alive == []
