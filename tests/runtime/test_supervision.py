"""One supervisor: any actor that fails (the CacheWriter included) reaches every waiting
and later caller as the same BackendFailedError naming it, from trio, asyncio and sync
code; ``backend.serving()`` also raises it in the caller's nursery."""

from __future__ import annotations

import asyncio
import math
import random
from pathlib import Path

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script
from minimallm import (
    BackendFailedError,
    MinimaLlmConfig,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
    UsageError,
)
from minimallm._cache.store import PromptCache
from minimallm._config.settings import BatchConfig
from minimallm._runtime.serve import RuntimeOptions
from minimallm.actors.cache_writer import CacheWriter


class DiskOnFire(Exception):
    pass


def req(i: int) -> MinimaLlmRequest:
    return MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"p{i}"}])


NEVER = math.inf
"""Seconds: the other answers never come, only the failure can end their calls (a
virtual clock jumps to the next deadline while the writer closes its store in a
thread, so any finite latency could let them finish first)."""


def quick_then_slow(content: str, n: int) -> Script:
    """p0 answers at once (its row reaches the writer), the others never."""
    return Script(latency=0.0 if content == "p0" else NEVER)


@pytest.fixture
def broken_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CacheWriter's first commit raises (in the actor itself, not in the commit's
    thread: a virtual clock would jump while a thread runs)."""

    async def step(self: CacheWriter) -> None:
        raise DiskOnFire("the disk is on fire")

    monkeypatch.setattr(CacheWriter, "_step", step)


def backend_for(tmp_path: Path, server: FakeServer) -> OpenAIMinimaLlm:
    cfg = MinimaLlmConfig(
        base_url="http://fake/v1",
        model="m",
        rpm=0,
        cache_dir=str(tmp_path),
        # no attempt may time out while the writer's closing thread lets the virtual
        # clock run: only the failure ends the calls that never get an answer
        timeout_s=1e12,
        batch=BatchConfig(heartbeat_s=0, num_workers=8, stall_s=1e12),
    )
    return OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))


def assert_names_the_writer(error: BaseException) -> None:
    assert isinstance(error, BackendFailedError), repr(error)
    assert str(error) == "minimallm's CacheWriter failed: DiskOnFire: the disk is on fire"
    assert isinstance(error.__cause__, DiskOnFire)


@pytest.mark.usefixtures("broken_disk")
async def test_a_failing_cache_writer_reaches_waiting_and_later_trio_callers(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer(quick_then_slow)
    backend = backend_for(tmp_path, server)
    try:
        with pytest.raises(BackendFailedError) as waiting:
            await backend.run_batched([req(i) for i in range(8)])
        assert_names_the_writer(waiting.value)
        with pytest.raises(BackendFailedError) as later:
            await backend.generate(req(100))
        assert_names_the_writer(later.value)
    finally:
        await backend.aclose()
    # closed, the backend starts afresh
    assert isinstance(await backend.generate(req(0)), MinimaLlmResponse)
    await backend.aclose()


@pytest.mark.usefixtures("broken_disk")
def test_a_failing_cache_writer_reaches_asyncio_callers(tmp_path: Path) -> None:
    server = FakeServer(quick_then_slow)

    async def main() -> tuple[BaseException, BaseException]:
        backend = backend_for(tmp_path, server)
        try:
            with pytest.raises(BackendFailedError) as waiting:
                await backend.run_batched([req(i) for i in range(8)])
            with pytest.raises(BackendFailedError) as later:
                await backend.generate(req(100))
            return waiting.value, later.value
        finally:
            await backend.aclose()

    for error in asyncio.run(main()):
        assert_names_the_writer(error)


@pytest.mark.usefixtures("broken_disk")
def test_a_failing_cache_writer_reaches_sync_callers(tmp_path: Path) -> None:
    backend = backend_for(tmp_path, FakeServer(quick_then_slow))
    try:
        with pytest.raises(BackendFailedError) as waiting:
            backend.run_batched_sync([req(i) for i in range(8)])
        assert_names_the_writer(waiting.value)
        with pytest.raises(BackendFailedError) as later:
            backend.generate_sync(req(100))
        assert_names_the_writer(later.value)
    finally:
        backend.close_sync()


@pytest.mark.usefixtures("broken_disk")
async def test_serving_raises_an_actor_failure_in_the_callers_nursery(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """The block is cancelled (it was waiting on something else entirely) and the
    ``async with`` raises the one BackendFailedError, not an ExceptionGroup."""
    backend = backend_for(tmp_path, FakeServer(quick_then_slow))
    reached_the_end = False
    with pytest.raises(BackendFailedError) as info:
        async with backend.serving():
            assert isinstance(await backend.generate(req(0)), MinimaLlmResponse)
            await trio.Event().wait()  # not a call to the backend: only the nursery learns
            reached_the_end = True
    assert_names_the_writer(info.value)
    assert not reached_the_end


async def test_serving_runs_the_backend_in_the_callers_nursery_and_stops_it(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    server = FakeServer()
    backend = backend_for(tmp_path, server)
    async with backend.serving() as same:
        assert same is backend
        results = await backend.run_batched([req(i) for i in range(20)])
        assert all(isinstance(r, MinimaLlmResponse) for r in results)
        with pytest.raises(UsageError, match="already runs"):
            async with backend.serving():
                pass  # pragma: no cover
    assert all(t.closed for t in server.transports)  # every connection closed on leaving
    # every answer was committed when the block ended
    with PromptCache.open(tmp_path) as cache:
        assert len(cache.get_many([k for k in _keys(results)])) == 20


def _keys(results: list[object]) -> list[str]:
    from minimallm._cache.keys import cache_key

    return [cache_key("m", req(i)) for i in range(len(results))]


async def test_an_error_in_the_serving_block_comes_out_as_itself(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    backend = backend_for(tmp_path, FakeServer())
    with pytest.raises(KeyError, match="mine"):
        async with backend.serving():
            await backend.generate(req(0))
            raise KeyError("mine")
    # and the backend is usable again afterwards, hosted as usual
    assert isinstance(await backend.generate(req(1)), MinimaLlmResponse)
    await backend.aclose()


def test_serving_outside_trio_is_a_usage_error(tmp_path: Path) -> None:
    backend = backend_for(tmp_path, FakeServer())

    async def main() -> None:
        async with backend.serving():
            pass  # pragma: no cover

    with pytest.raises(UsageError, match="needs a trio run"):
        asyncio.run(main())


async def test_callers_whose_job_is_queued_for_a_worker_learn_of_a_stop_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """Jobs wait in a buffered queue for a free Worker; a stop must answer them, not
    drop them with the channel (their callers would wait forever)."""
    from minimallm import BackendClosedError

    cfg = MinimaLlmConfig(base_url="http://fake/v1", model="m", rpm=0, max_outstanding=1)
    server = FakeServer(lambda content, n: Script(latency=NEVER))
    backend = OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))
    errors: list[BaseException] = []

    async def call(i: int) -> None:
        try:
            await backend.generate(req(i))
        except BackendClosedError as exc:
            errors.append(exc)

    with trio.fail_after(60):  # virtual: a caller left waiting fails the test, not hangs
        async with trio.open_nursery() as nursery:
            for i in range(5):
                nursery.start_soon(call, i)
            await trio.testing.wait_all_tasks_blocked()
            assert len(server.sent) == 1  # one Worker: one call on the wire, four queued
            await backend.aclose()
    assert len(errors) == 5
