"""Another process holds the prompt cache's write lock: a batch runs at full speed, a
warning names the lock within 5 s, and every answer is in the cache once it frees."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import trio

from fakes import FakeServer, Script
from minimallm import (
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._cache.store import PromptCache
from minimallm._errors import CacheWarning
from minimallm._runtime.serve import RuntimeOptions

N = 3000
HOLD_LOCK = (
    "import sqlite3, sys\n"
    "db = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
    "db.execute('BEGIN IMMEDIATE')\n"
    "print('locked', flush=True)\n"
    "sys.stdin.read()\n"  # holds the lock until the test closes our stdin
)


def backend(cache_dir: Path) -> OpenAIMinimaLlm:
    server = FakeServer(lambda content, n: Script(latency=0.0))
    cfg = MinimaLlmConfig(
        base_url="http://fake.invalid",
        model="m",
        rpm=0,
        max_outstanding=128,
        cache_dir=str(cache_dir),
        batch=BatchConfig(heartbeat_s=0),
    )
    return OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))


def requests(tag: str) -> list[MinimaLlmRequest]:
    return [
        MinimaLlmRequest(f"{tag}{i}", [{"role": "user", "content": f"{tag} {i}"}]) for i in range(N)
    ]


def cached_rows(cache_dir: Path) -> int:
    with sqlite3.connect(cache_dir / "minima_llm.db") as db:
        return int(db.execute("SELECT count(*) FROM cache").fetchone()[0])


@pytest.mark.realtime
async def test_a_batch_runs_at_full_speed_while_another_process_holds_the_write_lock(
    tmp_path: Path,
) -> None:
    async with backend(tmp_path) as b:  # the same batch, unlocked: the yardstick
        start = time.monotonic()
        await b.run_batched(requests("free"))
        unlocked_s = time.monotonic() - start
    assert cached_rows(tmp_path) == N
    holder = subprocess.Popen(  # noqa: ASYNC220 (started once, before the batch)
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "minima_llm.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            async with backend(tmp_path) as b:
                start = time.monotonic()
                warned_after: list[float] = []

                async def watch() -> None:
                    while not any("write lock" in str(w.message) for w in caught):  # noqa: ASYNC110
                        await trio.sleep(0.05)
                    warned_after.append(time.monotonic() - start)

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(watch)
                    with trio.fail_after(30):  # today's stall: ~213 s, then another
                        results = await b.run_batched(requests("held"))
                    locked_s = time.monotonic() - start
                    with trio.fail_after(10):
                        while not warned_after:  # noqa: ASYNC110
                            await trio.sleep(0.05)
                assert all(isinstance(r, MinimaLlmResponse) for r in results)
                assert locked_s < 2 * unlocked_s + 2, (locked_s, unlocked_s)
                assert warned_after[0] < 5
                assert cached_rows(tmp_path) == N  # nothing written while locked
                holder.stdin.close()  # type: ignore[union-attr]
                holder.wait(10)
                with trio.fail_after(10):  # written once the lock frees, backend still open
                    while cached_rows(tmp_path) < 2 * N:  # noqa: ASYNC110 (a thread commits)
                        await trio.sleep(0.05)
        lock_warnings = [str(w.message) for w in caught if w.category is CacheWarning]
        assert "another process holds its write lock" in lock_warnings[0]
        assert str(tmp_path / "minima_llm.db") in lock_warnings[0]
        assert "is unlocked" in lock_warnings[-1]
    finally:
        holder.kill()
        holder.wait()
    assert not list(tmp_path.glob("*.jsonl"))  # noqa: ASYNC240
    print(f"unlocked {unlocked_s:.2f} s, locked {locked_s:.2f} s, warned {warned_after[0]:.2f} s")


KILLED_CHILD = (
    "import sys, time\n"
    "from minimallm import BatchConfig, MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm\n"
    "cfg = MinimaLlmConfig(base_url=sys.argv[1], model='m', rpm=0, cache_dir=sys.argv[2],\n"
    "                      batch=BatchConfig(heartbeat_s=0))\n"
    "b = OpenAIMinimaLlm(cfg)\n"
    "reqs = [MinimaLlmRequest(f'k{i}', [{'role': 'user', 'content': f'k {i}'}])\n"
    "        for i in range(300)]\n"
    "b.run_batched_sync(reqs, progress=lambda line: None)\n"
    "print('done', flush=True)\n"
    "time.sleep(60)\n"
)


def test_answers_spilled_while_locked_survive_sigkill_and_merge_at_the_next_open(
    tmp_path: Path,
) -> None:
    from minimallm.mock import MockServerThread

    PromptCache.open(tmp_path).close()
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(tmp_path / "minima_llm.db")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    with MockServerThread() as mock:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
            argv = [sys.executable, "-W", "ignore", "-c", KILLED_CHILD, mock.base_url]
            child = subprocess.Popen([*argv, str(tmp_path)], stdout=subprocess.PIPE, text=True)
            try:
                assert child.stdout is not None and child.stdout.readline() == "done\n"
            finally:
                child.kill()  # SIGKILL: no final commit, no cleanup
                child.wait()
            assert cached_rows(tmp_path) == 0
            assert len(list(tmp_path.glob("minima_llm.db.spill.*.jsonl"))) == 1
        finally:
            holder.kill()  # the lock goes with its holder
            holder.wait()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", CacheWarning)
            cfg = MinimaLlmConfig(
                base_url=mock.base_url, model="m", rpm=0, cache_dir=str(tmp_path),
                batch=BatchConfig(heartbeat_s=0),
            )  # fmt: skip
            later = OpenAIMinimaLlm(cfg)  # its writer adopts the dead child's spill file
            later.generate_sync(MinimaLlmRequest("x", [{"role": "user", "content": "x"}]))
            later.close_sync()
    assert cached_rows(tmp_path) == 301
    assert not list(tmp_path.glob("*.jsonl"))
