"""The CacheWriter and the CacheStage around it: nothing reported done before it is on
disk, nothing waits on a writer that stopped, one HTTP call per key in flight."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import trio
import trio.testing

from fakes import FakeServer
from minimallm import MinimaLlmRequest, MinimaLlmResponse, OpenAIMinimaLlm
from minimallm._cache.stage import CacheStage
from minimallm._cache.store import PromptCache
from minimallm._config.settings import MinimaLlmConfig
from minimallm._runtime.serve import RuntimeOptions
from minimallm.actors.cache_writer import CacheRow, CacheWriter, Flush
from minimallm.mock import MockServerThread

Factory = Callable[..., OpenAIMinimaLlm]


def on_disk(cache_dir: Path) -> dict[str, str]:
    with sqlite3.connect(cache_dir / "minima_llm.db") as db:
        return dict(db.execute("SELECT key, response_text FROM cache").fetchall())


def writer_for(
    cache_dir: Path,
) -> tuple[
    CacheWriter,
    trio.MemorySendChannel[CacheRow | Flush],
    trio.MemoryReceiveChannel[CacheRow | Flush],
    PromptCache,
    list[str],
]:
    cache = PromptCache.open(cache_dir)
    send, recv = trio.open_memory_channel[CacheRow | Flush](16)
    warnings: list[str] = []
    return CacheWriter(cache, recv, warnings.append), send, recv, cache, warnings


async def test_a_commit_cancelled_before_its_thread_starts_is_not_lost(tmp_path: Path) -> None:
    """The writer is cancelled just as it takes a row and a Flush: the commit's thread
    hop raises Cancelled at once. The row must still reach the disk, and the Flush must
    not report done before it has."""
    writer, send, _, _, _ = writer_for(tmp_path)
    flush = Flush(trio.Event())
    seen_when_done: list[dict[str, str]] = []

    async def watch() -> None:
        await flush.done.wait()
        seen_when_done.append(on_disk(tmp_path))

    async with trio.open_nursery() as outer:
        outer.start_soon(watch)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            send.send_nowait(CacheRow("k1", "answer 1", None))
            send.send_nowait(flush)
            nursery.cancel_scope.cancel()  # pending when the writer reaches its commit
    assert on_disk(tmp_path) == {"k1": "answer 1"}
    assert seen_when_done == [{"k1": "answer 1"}]


async def test_a_flush_sent_to_a_stopped_writer_fails_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer, send, _, _, _ = writer_for(tmp_path)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        nursery.cancel_scope.cancel()
    flush = Flush(trio.Event())
    with trio.fail_after(60):  # virtual time: a hang fails here instead of hanging
        with pytest.raises(trio.BrokenResourceError):
            await send.send(flush)


async def test_flushes_queued_when_the_writer_stops_are_all_answered(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    writer, send, _, _, _ = writer_for(tmp_path)
    flushes = [Flush(trio.Event()) for _ in range(3)]
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        nursery.cancel_scope.cancel()
        send.send_nowait(CacheRow("k", "v", None))
        for f in flushes:
            send.send_nowait(f)
    with trio.fail_after(60):
        for f in flushes:
            await f.done.wait()
    assert on_disk(tmp_path) == {"k": "v"}


async def _flush_or_rescue(
    layer: CacheStage, recv: trio.MemoryReceiveChannel[CacheRow | Flush], timeout_s: float = 60
) -> bool:
    """Run ``layer.flush()`` (shielded, so ``fail_after`` cannot bound it) and report
    whether it returned within ``timeout_s``. If it did not, answer the Flush it is
    waiting on by hand so the test fails instead of hanging."""
    finished = trio.Event()

    async def flush() -> None:
        await layer.flush()
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(flush)
        with trio.move_on_after(timeout_s):
            await finished.wait()
        if not finished.is_set():
            while True:
                message = recv.receive_nowait()
                if isinstance(message, Flush):
                    message.done.set()
                    break
            return False
    return True


async def test_cache_layer_flush_after_the_writer_stopped_returns_at_once(
    tmp_path: Path, autojump_clock: trio.testing.MockClock
) -> None:
    """What ``aclose()`` during a cached batch did: the batch's final (shielded) flush
    waited forever on a writer that had stopped reading."""
    writer, send, recv, cache, _ = writer_for(tmp_path)
    layer = CacheStage("m", cache, send)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        nursery.cancel_scope.cancel()
    assert await _flush_or_rescue(layer, recv)


async def test_a_flush_sent_during_the_writers_final_commit_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer is stopping (its final commit is in a thread) when a batch flushes.
    (Real time: a virtual clock would jump while the commit's thread runs.)"""
    writer, send, recv, cache, _ = writer_for(tmp_path)
    layer = CacheStage("m", cache, send)
    in_commit = threading.Event()
    release = threading.Event()
    real_put_many = PromptCache.put_many

    def slow_put_many(
        self: PromptCache, rows: list[tuple[str, str, str | None]], **kw: float | None
    ) -> None:
        in_commit.set()
        release.wait(10)
        real_put_many(self, rows, **kw)

    monkeypatch.setattr(PromptCache, "put_many", slow_put_many)
    async with trio.open_nursery() as nursery:
        writer_scope = trio.CancelScope()

        async def run_writer(*, task_status: trio.TaskStatus[None]) -> None:
            with writer_scope:
                await writer.run(task_status=task_status)

        await nursery.start(run_writer)
        send.send_nowait(CacheRow("k", "v", None))
        writer_scope.cancel()  # the writer's final commit takes the row
        await trio.to_thread.run_sync(in_commit.wait, 10)
        nursery.start_soon(trio.to_thread.run_sync, release.set)
        assert await _flush_or_rescue(layer, recv, timeout_s=10)
    assert on_disk(tmp_path) == {"k": "v"}


# -- single flight ------------------------------------------------------------------------


def _same(i: int) -> MinimaLlmRequest:
    return MinimaLlmRequest(f"id{i}", [{"role": "user", "content": "the same question"}])


async def test_500_identical_concurrent_calls_make_one_http_request(
    make_config: Callable[..., MinimaLlmConfig], mock_server: MockServerThread, tmp_path: Path
) -> None:
    backend = OpenAIMinimaLlm(make_config(cache_dir=str(tmp_path), max_outstanding=8))
    results: list[object] = []

    async def call(i: int) -> None:
        results.append(await backend.generate(_same(i)))

    async with backend, trio.open_nursery() as nursery:
        for i in range(500):
            nursery.start_soon(call, i)
    assert mock_server.stats.requests_total == 1
    assert len(results) == 500
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert len({r.text for r in results}) == 1  # type: ignore[attr-defined]


async def test_force_refresh_still_asks_once_and_never_joins_a_cache_hit(
    make_config: Callable[..., MinimaLlmConfig], mock_server: MockServerThread, tmp_path: Path
) -> None:
    cfg = make_config(cache_dir=str(tmp_path), max_outstanding=8)
    async with OpenAIMinimaLlm(cfg) as backend:
        first = await backend.generate(_same(0))
    assert isinstance(first, MinimaLlmResponse) and mock_server.stats.requests_total == 1
    mock_server.reset()
    fresh: list[object] = []
    cached: list[object] = []

    async def call(i: int, force: bool) -> None:
        out = await backend.generate(_same(i), force_refresh=force)
        (fresh if force else cached).append(out)

    backend = OpenAIMinimaLlm(cfg)  # a new process's view: the answer is on disk only
    async with backend, trio.open_nursery() as nursery:
        for i in range(200):
            nursery.start_soon(call, i, i % 2 == 0)
    # the plain calls read the disk; the forced ones never take a cached answer and
    # share one fresh HTTP call among themselves
    assert mock_server.stats.requests_total == 1
    assert all(isinstance(r, MinimaLlmResponse) and not r.cached for r in fresh)
    assert all(isinstance(r, MinimaLlmResponse) for r in cached)


def test_500_identical_concurrent_calls_from_asyncio_make_one_http_request(
    make_config: Callable[..., MinimaLlmConfig], mock_server: MockServerThread, tmp_path: Path
) -> None:
    backend = OpenAIMinimaLlm(make_config(cache_dir=str(tmp_path), max_outstanding=8))

    async def main() -> list[object]:
        async with backend:
            return list(await asyncio.gather(*(backend.generate(_same(i)) for i in range(500))))

    results = asyncio.run(main())
    assert mock_server.stats.requests_total == 1
    assert all(isinstance(r, MinimaLlmResponse) for r in results)


async def test_answers_waiting_for_room_when_the_writer_stops_are_all_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers arrive while a stopping writer makes its final commit (a full buffer,
    senders waiting for room): every one still reaches the disk, none waits forever.
    (Real time: a virtual clock would jump while the commit's thread runs.)"""
    cache = PromptCache.open(tmp_path)
    send, recv = trio.open_memory_channel[CacheRow | Flush](2)
    writer = CacheWriter(cache, recv, lambda message: None, max_rows=1)
    in_commit = threading.Event()
    release = threading.Event()
    real_put_many = PromptCache.put_many

    def slow_put_many(
        self: PromptCache, rows: list[tuple[str, str, str | None]], **kw: float | None
    ) -> None:
        in_commit.set()
        release.wait(10)
        real_put_many(self, rows, **kw)

    monkeypatch.setattr(PromptCache, "put_many", slow_put_many)
    sent: list[str] = []

    async def sender(i: int) -> None:
        await send.send(CacheRow(f"k{i}", f"v{i}", None))
        sent.append(f"k{i}")

    with trio.fail_after(10):  # bounds the senders too: a hang fails instead
        async with trio.open_nursery() as nursery:
            writer_scope = trio.CancelScope()

            async def run_writer(*, task_status: trio.TaskStatus[None]) -> None:
                with writer_scope:
                    await writer.run(task_status=task_status)

            await nursery.start(run_writer)
            send.send_nowait(CacheRow("k0", "v0", None))
            writer_scope.cancel()  # the writer's final commit takes k0 and blocks
            await trio.to_thread.run_sync(in_commit.wait, 10)
            for i in range(1, 8):  # 2 fill the buffer, 5 wait for room
                nursery.start_soon(sender, i)
            await trio.testing.wait_all_tasks_blocked()
            await trio.to_thread.run_sync(release.set)
    assert sorted(sent) == [f"k{i}" for i in range(1, 8)]
    assert on_disk(tmp_path) == {f"k{i}": f"v{i}" for i in range(8)}


async def test_a_writer_that_crashes_still_answers_its_flushes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    writer, send, _, _, _ = writer_for(tmp_path)

    def broken(self: PromptCache, rows: object, **kw: object) -> None:
        raise RuntimeError("a bug in the store")

    monkeypatch.setattr(PromptCache, "put_many", broken)
    flush = Flush(trio.Event())
    with pytest.raises(ExceptionGroup) as info:
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            send.send_nowait(CacheRow("k", "v", None))
            send.send_nowait(flush)
    assert info.group_contains(RuntimeError, match="a bug")
    with trio.fail_after(60):
        await flush.done.wait()
        with pytest.raises(trio.BrokenResourceError):
            await send.send(Flush(trio.Event()))


# -- requests that cannot be encoded -----------------------------------------------------


async def test_a_request_that_cannot_be_encoded_skips_the_cache_and_spares_its_chunk(
    tmp_path: Path,
) -> None:
    from minimallm import MinimaLlmFailure
    from minimallm._cache.store import cache_key

    good = _same(0)
    cache = PromptCache.open(tmp_path)
    cache.put_many([(cache_key("m", good), "cached answer", None)])
    send, _ = trio.open_memory_channel[CacheRow | Flush](16)
    layer = CacheStage("m", cache, send)
    bad = [
        MinimaLlmRequest("b1", [{"role": "user", "content": "x"}], extra={"x": object()}),
        MinimaLlmRequest("b2", "hi"),  # type: ignore[arg-type]
        MinimaLlmRequest("b3", [None]),  # type: ignore[list-item]
    ]
    found = await layer.lookup_many([bad[0], good, *bad[1:]])
    assert [key for key, _ in found].count("") == 3
    assert [hit is not None for _, hit in found] == [False, True, False, False]

    cache.close()
    # through the request door: each is its own InvalidRequest failure, the server is
    # never asked, and the good request of the same batch is still a cache hit
    server = FakeServer()
    cfg = MinimaLlmConfig(base_url="http://fake/v1", model="m", rpm=0, cache_dir=str(tmp_path))
    backend = OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport))
    try:
        results = await backend.run_batched([bad[0], good, *bad[1:]])
        for req in bad:
            single = await backend.generate(req)
            assert isinstance(single, MinimaLlmFailure), single
            assert single.error_type == "InvalidRequest"
    finally:
        await backend.aclose()
    assert [getattr(r, "error_type", "ok") for r in results] == [
        "InvalidRequest",
        "ok",
        "InvalidRequest",
        "InvalidRequest",
    ]
    assert isinstance(results[1], MinimaLlmResponse) and results[1].cached
    assert server.sent == []


async def test_a_lookup_after_the_backend_closed_its_cache_is_the_backend_closing(
    tmp_path: Path,
) -> None:
    """``aclose()`` during a cached batch: the feeder's next bulk lookup found the cache
    closed, warned "cache read failed, asking the server instead" and asked a server
    that was closing too. Closing is not a cache failure."""
    import warnings

    from minimallm import BackendClosedError
    from minimallm._errors import CacheWarning

    cache = PromptCache.open(tmp_path)
    send, _ = trio.open_memory_channel[CacheRow | Flush](16)
    layer = CacheStage("m", cache, send)
    cache.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CacheWarning)
        with pytest.raises(BackendClosedError):
            await layer.lookup_many([_same(0)])
