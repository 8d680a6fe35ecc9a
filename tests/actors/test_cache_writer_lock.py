"""The CacheWriter against a database another connection holds the write lock of:
answers are kept (spilled beside the cache), flushes answer, a warning names the lock,
and every answer lands in the database once the lock frees — or at the next open.

Real time (the lock waits happen in SQLite, in a thread), kept short: the writer waits
50 ms per attempt and retries every 100 ms."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import trio

from minimallm._cache.store import PromptCache
from minimallm.actors.cache_writer import CacheRow, CacheWriter, Flush

FAST = {"max_delay_s": 0.05, "lock_wait_s": 0.05, "retry_s": 0.1, "close_wait_s": 0.3}


def on_disk(cache_dir: Path) -> dict[str, str]:
    with sqlite3.connect(cache_dir / "minima_llm.db") as db:
        return dict(db.execute("SELECT key, response_text FROM cache").fetchall())


def spills(cache_dir: Path) -> list[Path]:
    return sorted(cache_dir.glob("minima_llm.db.spill.*.jsonl"))


@contextmanager
def write_lock(cache_dir: Path) -> Iterator[sqlite3.Connection]:
    """Holds the database's write lock (as another process would) until the block ends."""
    conn = sqlite3.connect(cache_dir / "minima_llm.db", isolation_level=None)
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


async def flush(send: trio.MemorySendChannel[CacheRow | Flush]) -> None:
    done = trio.Event()
    await send.send(Flush(done))
    with trio.fail_after(5):
        await done.wait()


async def test_a_locked_database_delays_writes_not_senders_and_loses_nothing(
    tmp_path: Path,
) -> None:
    cache = PromptCache.open(tmp_path)
    send, recv = trio.open_memory_channel[CacheRow | Flush](4)  # a small buffer
    warned: list[tuple[float, str]] = []
    writer = CacheWriter(cache, recv, lambda m: warned.append((trio.current_time(), m)), **FAST)
    async with trio.open_nursery() as nursery:
        await nursery.start(writer.run)
        with write_lock(tmp_path):
            start = trio.current_time()
            with trio.fail_after(5):  # 2,000 answers through a buffer of 4: never stuck
                for i in range(2000):
                    await send.send(CacheRow(f"k{i}", f"v{i}", None))
            await flush(send)  # answers once the rows are safe in the spill file
            assert on_disk(tmp_path) == {}
            [spill] = spills(tmp_path)
            assert writer.statistics().spilled == 2000
            [(when, message)] = warned
            assert when - start < 5
            assert "is locked: another process holds its write lock" in message
            assert str(tmp_path / "minima_llm.db") in message and str(spill) in message
        with trio.fail_after(5):
            while writer.statistics().written < 2000:  # noqa: ASYNC110 (a thread commits)
                await trio.sleep(0.05)
        assert on_disk(tmp_path) == {f"k{i}": f"v{i}" for i in range(2000)}
        assert "is unlocked" in warned[-1][1]
        assert writer.statistics().written == 2000 and writer.statistics().spilled == 0
        nursery.cancel_scope.cancel()
    assert spills(tmp_path) == []


async def test_closed_while_locked_the_spill_stays_and_the_next_open_merges_it(
    tmp_path: Path,
) -> None:
    PromptCache.open(tmp_path).close()
    warned: list[str] = []
    with write_lock(tmp_path):
        cache = PromptCache.open(tmp_path)
        send, recv = trio.open_memory_channel[CacheRow | Flush](16)
        async with trio.open_nursery() as nursery:
            await nursery.start(CacheWriter(cache, recv, warned.append, **FAST).run)
            for i in range(10):
                await send.send(CacheRow(f"k{i}", f"v{i}", None))
            await flush(send)
            nursery.cancel_scope.cancel()  # the backend closes; still locked
        [spill] = spills(tmp_path)
        assert "still locked" in warned[-1] and str(spill) in warned[-1]
    assert on_disk(tmp_path) == {}
    later = PromptCache.open(tmp_path)
    send, recv = trio.open_memory_channel[CacheRow | Flush](16)
    async with trio.open_nursery() as nursery:
        await nursery.start(CacheWriter(later, recv, warned.append, **FAST).run)
        await send.send(CacheRow("new", "n", None))
        await flush(send)
        assert on_disk(tmp_path) == {"new": "n", **{f"k{i}": f"v{i}" for i in range(10)}}
        nursery.cancel_scope.cancel()
    assert spills(tmp_path) == []


async def test_a_lock_that_frees_during_the_close_wait_is_waited_for(tmp_path: Path) -> None:
    cache = PromptCache.open(tmp_path)
    send, recv = trio.open_memory_channel[CacheRow | Flush](16)
    writer = CacheWriter(cache, recv, lambda m: None, **{**FAST, "close_wait_s": 5.0})
    unlocked = trio.Event()

    async def hold_lock_until_unlocked() -> None:
        with write_lock(tmp_path):
            await unlocked.wait()

    async with trio.open_nursery() as outer:
        outer.start_soon(hold_lock_until_unlocked)
        await trio.sleep(0.05)
        async with trio.open_nursery() as nursery:
            await nursery.start(writer.run)
            await send.send(CacheRow("k", "v", None))
            await flush(send)
            assert on_disk(tmp_path) == {}
            nursery.cancel_scope.cancel()  # closing while locked: it waits up to 5 s

            async def unlock_soon() -> None:
                await trio.sleep(0.3)
                unlocked.set()

            outer.start_soon(unlock_soon)
    assert on_disk(tmp_path) == {"k": "v"}
    assert spills(tmp_path) == []
