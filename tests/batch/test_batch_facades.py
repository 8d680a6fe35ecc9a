"""One batch from trio, asyncio and sync code; cancellation and Ctrl-C leave nothing behind."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable

import pytest
import trio

from minimallm import BatchConfig, MinimaLlmRequest, MinimaLlmResult, OpenAIMinimaLlm
from minimallm.mock import MockServerThread

Factory = Callable[..., OpenAIMinimaLlm]


def batch(n: int) -> list[MinimaLlmRequest]:
    faults = {
        3: "#mock:fault=500",
        7: "#mock:fault=404",
        11: "#mock:fault=null",
        13: "#mock:fault=503,429",
    }
    return [
        MinimaLlmRequest(
            f"id{i}", [{"role": "user", "content": f"item {i} {faults.get(i, '')}".strip()}]
        )
        for i in range(n)
    ]


def fingerprint(results: list[MinimaLlmResult]) -> list[tuple[str, str, str]]:
    return [
        (r.request_id, type(r).__name__, getattr(r, "text", None) or getattr(r, "error_type", ""))
        for r in results
    ]


def test_trio_asyncio_and_sync_give_identical_results(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    reqs = batch(60)
    quiet = BatchConfig(heartbeat_s=0, num_workers=8)

    async def run(backend: OpenAIMinimaLlm) -> list[MinimaLlmResult]:
        async with backend:
            return await backend.run_batched(reqs, progress=lambda line: None)

    via_trio = trio.run(run, make_backend(batch=quiet))
    mock_server.reset()  # the per-prompt fault sequences start again
    via_asyncio = asyncio.run(run(make_backend(batch=quiet)))
    mock_server.reset()
    sync_backend = make_backend(batch=quiet)
    via_sync = sync_backend.run_batched_sync(reqs, progress=lambda line: None)
    sync_backend.close_sync()
    assert fingerprint(via_trio) == fingerprint(via_asyncio) == fingerprint(via_sync)
    kinds = {r.request_id: type(r).__name__ for r in via_trio}
    assert (kinds["id7"], kinds["id11"], kinds["id3"], kinds["id13"]) == (
        "MinimaLlmFailure",
        "MinimaLlmFailure",
        "MinimaLlmResponse",
        "MinimaLlmResponse",
    )


@pytest.mark.realtime
def test_cancelling_an_asyncio_batch_stops_everything(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    backend = make_backend(max_outstanding=8, batch=BatchConfig(heartbeat_s=0, num_workers=16))
    reqs = [
        MinimaLlmRequest(f"h{i}", [{"role": "user", "content": f"h{i} #mock:fault=hang"}])
        for i in range(500)
    ]

    async def main() -> float:
        task = asyncio.create_task(backend.run_batched(reqs, progress=lambda line: None))
        assert await asyncio.to_thread(mock_server.wait_for, lambda s: s.in_flight == 8, 3.0)
        start = time.monotonic()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return time.monotonic() - start

    elapsed = asyncio.run(main())
    assert elapsed < 1.0
    assert mock_server.wait_for(lambda s: s.in_flight == 0, 2.0)
    assert mock_server.stats.requests_total == 8  # nothing was sent after the cancel
    backend.close_sync()
    assert mock_server.wait_for(lambda s: s.open_connections == 0, 2.0)


def test_cancelling_a_trio_batch_stops_everything(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    async def main() -> None:
        backend = make_backend(max_outstanding=4, batch=BatchConfig(heartbeat_s=0))
        reqs = [
            MinimaLlmRequest(f"h{i}", [{"role": "user", "content": f"t{i} #mock:fault=hang"}])
            for i in range(100)
        ]
        with trio.move_on_after(0.5) as scope:
            await backend.run_batched(reqs, progress=lambda line: None)
        assert scope.cancelled_caught

    before = set(threading.enumerate())
    trio.run(main)  # the run ended: its runtime (actors, connections) ended with it
    assert mock_server.wait_for(lambda s: s.open_connections == 0 and s.in_flight == 0, 1.0)
    # no thread of its own outlives it (trio keeps idle worker threads for reuse: those
    # are trio's, named "Trio thread N", and not ours); the bridge thread never started
    left = [
        t.name
        for t in threading.enumerate()
        if t not in before and t.is_alive() and not t.name.startswith("Trio thread")
    ]
    assert left == []


@pytest.mark.realtime
@pytest.mark.skipif(
    threading.current_thread() is not threading.main_thread(), reason="needs the main thread"
)
def test_ctrl_c_stops_a_sync_batch(make_backend: Factory, mock_server: MockServerThread) -> None:
    backend = make_backend(max_outstanding=4, batch=BatchConfig(heartbeat_s=0))
    reqs = [
        MinimaLlmRequest(f"c{i}", [{"role": "user", "content": f"c{i} #mock:fault=hang"}])
        for i in range(100)
    ]
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        backend.run_batched_sync(reqs, progress=lambda line: None)
    assert time.monotonic() - start < 1.5
    assert mock_server.wait_for(lambda s: s.in_flight == 0, 2.0)
    backend.close_sync()
    assert mock_server.wait_for(lambda s: s.open_connections == 0, 2.0)
