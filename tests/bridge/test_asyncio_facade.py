"""The same backend from asyncio (through the bridge thread) and from sync code."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable

import pytest

from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, UsageError
from minimallm._backend import OpenAIMinimaLlm
from minimallm._context import get_last_cached, reset_force_refresh, set_force_refresh
from minimallm.mock import MockServerThread

Factory = Callable[..., OpenAIMinimaLlm]
pytestmark = pytest.mark.filterwarnings("error")


def ask(content: str, rid: str = "r") -> MinimaLlmRequest:
    return MinimaLlmRequest(rid, [{"role": "user", "content": content}])


def test_three_asyncio_runs_with_one_backend(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    backend = make_backend()

    async def main(i: int) -> str:
        result = await backend.generate(ask(f"run {i}"))
        assert isinstance(result, MinimaLlmResponse)
        return result.text

    assert [asyncio.run(main(i)) for i in range(3)] == ["echo: run 0", "echo: run 1", "echo: run 2"]
    for i in range(5):
        asyncio.run(main(i))
    # connections survive between runs (the bridge's trio thread owns them): 8 calls
    # over at most max_outstanding=4 connections
    assert mock_server.stats.connections_accepted <= 4
    asyncio.run(backend.aclose())


def test_documented_shape_with_aclose_in_every_run(make_backend: Factory) -> None:
    backend = make_backend()

    async def main() -> None:
        results = await asyncio.gather(
            *(backend.generate(ask(f"g{i}", f"id{i}")) for i in range(50))
        )
        assert [r.request_id for r in results] == [f"id{i}" for i in range(50)]
        await backend.aclose()

    asyncio.run(main())
    asyncio.run(main())  # usable again after aclose


def test_cancelled_task_cancels_the_attempt_and_closes_its_connection(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    backend = make_backend(timeout_s=60.0)

    async def main() -> None:
        task = asyncio.create_task(backend.generate(ask("#mock:fault=hang")))
        assert await asyncio.to_thread(mock_server.wait_for, lambda s: s.in_flight == 1, 3.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        closed = await asyncio.to_thread(
            mock_server.wait_for, lambda s: s.open_connections == 0, 2.0
        )
        assert closed, "connection still open 2 s after the cancel"
        await backend.aclose()

    asyncio.run(main())
    assert mock_server.stats.in_flight == 0


def test_call_inside_an_already_running_loop(make_backend: Factory) -> None:
    """Jupyter's case: a loop runs, the user awaits from it (several times)."""
    backend = make_backend()

    async def cell() -> list[str]:
        out = []
        for i in range(3):
            r = await backend.generate(ask(f"cell {i}"))
            assert isinstance(r, MinimaLlmResponse)
            out.append(r.text)
        return out

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(cell())[2] == "echo: cell 2"
        assert loop.run_until_complete(cell())[0] == "echo: cell 0"
        loop.run_until_complete(backend.aclose())
    finally:
        loop.close()


def test_sync_calls(make_backend: Factory) -> None:
    backend = make_backend()
    result = backend.generate_sync(ask("sync"))
    assert isinstance(result, MinimaLlmResponse) and result.text == "echo: sync"
    failure = backend.generate_sync(ask("#mock:fault=404"))
    assert isinstance(failure, MinimaLlmFailure) and failure.status == 404
    backend.close_sync()


def test_sync_call_inside_a_running_loop_is_refused(make_backend: Factory) -> None:
    backend = make_backend()

    async def main() -> None:
        with pytest.raises(UsageError, match="running asyncio event loop"):
            backend.generate_sync(ask("x"))

    asyncio.run(main())


def test_contextvars_cross_the_bridge(make_backend: Factory) -> None:
    backend = make_backend()

    async def main() -> None:
        token = set_force_refresh(True)
        try:
            r = await backend.generate(ask("ctx"))
        finally:
            reset_force_refresh(token)
        assert isinstance(r, MinimaLlmResponse)
        assert get_last_cached() is False
        await backend.aclose()

    asyncio.run(main())


def test_a_closed_loop_does_not_break_the_bridge(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    """A loop closed while its call is still in trio: the reply is dropped quietly."""
    backend = make_backend()
    loop = asyncio.new_event_loop()
    task = loop.create_task(backend.generate(ask("#mock:latency=0.2")))
    in_trio = asyncio.to_thread(mock_server.wait_for, lambda s: s.in_flight == 1, 3.0)
    assert loop.run_until_complete(in_trio)
    task.cancel()
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert isinstance(backend.generate_sync(ask("after")), MinimaLlmResponse)
    backend.close_sync()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore:This process .* is multi-threaded:DeprecationWarning")
def test_a_forked_child_gets_its_own_trio_thread(make_backend: Factory) -> None:
    backend = make_backend()
    assert isinstance(backend.generate_sync(ask("parent")), MinimaLlmResponse)
    pid = os.fork()
    if pid == 0:  # the child: the parent's trio thread does not exist here
        code = 1
        try:
            result = backend.generate_sync(ask("child"))
            code = (
                0 if isinstance(result, MinimaLlmResponse) and result.text == "echo: child" else 2
            )
            backend.close_sync()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert isinstance(backend.generate_sync(ask("parent again")), MinimaLlmResponse)
    backend.close_sync()
