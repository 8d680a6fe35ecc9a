"""The prompt cache in the request path: hits, force_refresh, contextvars,
single-flight, compatibility with the original's files, failure modes, no loss."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import sqlite3
from pathlib import Path

import pytest
import trio

from fakes import FakeServer, Script
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    BatchProgress,
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
    get_last_cached,
    reset_force_refresh,
    set_force_refresh,
)
from minimallm._cache.store import PromptCache, cache_key
from minimallm._errors import CacheWarning
from minimallm._runtime.serve import RuntimeOptions

QUIET = BatchConfig(heartbeat_s=0)


def counting_server(latency: float = 0.0) -> FakeServer:
    """Answers ``"<content> #<n>"`` so a fresh answer differs from a cached one."""

    def script(content: str, n: int) -> Script:
        body = json.dumps({"choices": [{"message": {"content": f"{content} #{n}"}}]}).encode()
        return Script(latency=latency, body=body)

    return FakeServer(script)


def backend(server: FakeServer, cache_dir: Path, **kw: object) -> OpenAIMinimaLlm:
    settings: dict[str, object] = {
        "base_url": "http://fake.invalid",
        "model": "m",
        "rpm": 0,
        "cache_dir": str(cache_dir),
        "batch": QUIET,
    }
    settings.update(kw)
    return OpenAIMinimaLlm(
        MinimaLlmConfig(**settings),  # type: ignore[arg-type]
        options=RuntimeOptions(server.transport, random.Random(0)),
    )


def ask(content: str, rid: str = "r") -> MinimaLlmRequest:
    return MinimaLlmRequest(rid, [{"role": "user", "content": content}], temperature=0.0)


def rows(cache_dir: Path) -> dict[str, str]:
    with sqlite3.connect(cache_dir / "minima_llm.db") as db:
        return dict(db.execute("SELECT key, response_text FROM cache").fetchall())


async def test_second_call_is_a_hit_and_force_refresh_overwrites(tmp_path: Path) -> None:
    server = counting_server()
    async with backend(server, tmp_path) as b:
        first = await b.generate(ask("hi"))
        assert isinstance(first, MinimaLlmResponse) and (first.text, first.cached) == (
            "hi #0",
            False,
        )
    async with backend(server, tmp_path) as b:  # a new backend: from disk, not memory
        again = await b.generate(ask("hi", "other-id"))
        assert isinstance(again, MinimaLlmResponse)
        assert (again.text, again.cached, again.request_id) == ("hi #0", True, "other-id")
        assert get_last_cached() is True
        fresh = await b.generate(ask("hi"), force_refresh=True)
        assert isinstance(fresh, MinimaLlmResponse) and (fresh.text, fresh.cached) == (
            "hi #1",
            False,
        )
        assert get_last_cached() is False
    async with backend(server, tmp_path) as b:
        after = await b.generate(ask("hi"))
        assert isinstance(after, MinimaLlmResponse) and (after.text, after.cached) == (
            "hi #1",
            True,
        )
    assert len(server.sent) == 2


async def test_force_refresh_contextvar_is_honoured(tmp_path: Path) -> None:
    server = counting_server()
    async with backend(server, tmp_path) as b:
        await b.generate(ask("x"))
        token = set_force_refresh(True)
        try:
            r = await b.generate(ask("x"))
        finally:
            reset_force_refresh(token)
        assert isinstance(r, MinimaLlmResponse) and not r.cached and r.text == "x #1"
        r = await b.generate(ask("x"))
        assert isinstance(r, MinimaLlmResponse) and r.cached and r.text == "x #1"


def test_contextvars_across_the_asyncio_facade(tmp_path: Path) -> None:
    server = counting_server()
    b = backend(server, tmp_path)

    async def main() -> list[tuple[str, bool, bool]]:
        seen = []
        for force in (False, False, True, False):
            token = set_force_refresh(force)
            try:
                r = await b.generate(ask("y"))
            finally:
                reset_force_refresh(token)
            assert isinstance(r, MinimaLlmResponse)
            seen.append((r.text, r.cached, get_last_cached()))
        await b.aclose()
        return seen

    assert asyncio.run(main()) == [
        ("y #0", False, False),
        ("y #0", True, True),
        ("y #1", False, False),
        ("y #1", True, True),
    ]


async def test_identical_requests_in_flight_make_one_http_call(tmp_path: Path) -> None:
    server = counting_server(latency=0.2)
    results: dict[int, object] = {}
    async with backend(server, tmp_path) as b:

        async def call(i: int) -> None:
            results[i] = await b.generate(ask("same", f"id{i}"))

        async with trio.open_nursery() as nursery:
            for i in range(10):
                nursery.start_soon(call, i)
    assert len(server.sent) == 1
    assert {r.text for r in results.values()} == {"same #0"}  # type: ignore[attr-defined]
    assert {r.request_id for r in results.values()} == {f"id{i}" for i in range(10)}  # type: ignore[attr-defined]


async def test_a_cache_written_by_the_original_is_read_as_hits(tmp_path: Path) -> None:
    """The original's file, table and key formula, built here without minimallm."""
    req = MinimaLlmRequest(
        "q1",
        [{"role": "user", "content": "old"}],
        temperature=0.0,
        max_tokens=5,
        extra={"top_p": 1},
    )
    obj = {
        "model": "m",
        "messages": [{"role": "user", "content": "old"}],
        "temperature": 0.0,
        "max_tokens": 5,
        "extra": {"top_p": 1},
    }
    key = hashlib.sha256(
        json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":")).encode()
    ).hexdigest()
    assert key == cache_key("m", req)
    with sqlite3.connect(tmp_path / "minima_llm.db") as db:
        db.execute(
            "CREATE TABLE cache (key TEXT PRIMARY KEY, response_text TEXT NOT NULL,"
            " response_raw TEXT, created_at REAL NOT NULL)"
        )
        db.execute(
            "INSERT INTO cache VALUES (?, ?, ?, ?)", (key, "from 2025", '{"choices": []}', 1.0)
        )
    server = counting_server()
    async with backend(server, tmp_path) as b:
        [r] = await b.run_batched([req])
    assert isinstance(r, MinimaLlmResponse) and (r.text, r.cached) == ("from 2025", True)
    assert r.raw == {"choices": []}
    assert server.sent == []


async def test_batch_reads_in_bulk_and_reports_cached(tmp_path: Path) -> None:
    server = counting_server()
    reqs = [ask(f"p{i}", f"id{i}") for i in range(1200)]
    async with backend(server, tmp_path, max_outstanding=16) as b:
        await b.run_batched(reqs[:700])
    snapshots: list[BatchProgress] = []
    async with backend(server, tmp_path, max_outstanding=16) as b:
        results = await b.run_batched(reqs, progress=snapshots.append)
    assert [r.request_id for r in results] == [f"id{i}" for i in range(1200)]
    assert [r.cached for r in results] == [True] * 700 + [False] * 500  # type: ignore[union-attr]
    assert len(server.sent) == 1200
    final = snapshots[-1]
    assert (final.kind, final.done, final.ok, final.cached) == ("done", 1200, 1200, 700)
    assert final.eta_s == 0.0 and final.attempts == 500


async def test_aborted_and_cancelled_batches_lose_no_answer(tmp_path: Path) -> None:
    def script(content: str, n: int) -> Script:
        i = int(content[1:])
        return Script(latency=0.01 * (i % 7), status=400 if i % 10 == 9 else 200)

    server = FakeServer(script)
    b = backend(server, tmp_path, batch=BatchConfig(heartbeat_s=0, max_failures=2, num_workers=4))
    with pytest.raises(BatchAbortedError) as info:
        await b.run_batched([ask(f"p{i}", f"id{i}") for i in range(100)])
    ok = [r for r in info.value.results if isinstance(r, MinimaLlmResponse)]
    assert len(ok) >= 20
    assert set(rows(tmp_path).values()) == {r.text for r in ok}  # on disk as soon as it raised

    slow = counting_server(latency=0.05)
    b2 = backend(slow, tmp_path / "c2", batch=BatchConfig(heartbeat_s=0, num_workers=4))
    with trio.move_on_after(0.3):
        await b2.run_batched([ask(f"s{i}", f"id{i}") for i in range(1000)])
    done = [s for s in slow.sent if not s.cancelled]
    assert done and len(rows(tmp_path / "c2")) == len(done)
    await b.aclose()
    await b2.aclose()


async def test_unreadable_cache_warns_and_the_batch_still_answers(tmp_path: Path) -> None:
    db = tmp_path / "minima_llm.db"
    db.write_bytes(b"this is not a database" * 100)
    before = db.read_bytes()
    server = counting_server()
    with pytest.warns(CacheWarning, match="WITHOUT the prompt cache.*minima_llm.db"):
        async with backend(server, tmp_path) as b:
            results = await b.run_batched([ask("a"), ask("b")])
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert db.read_bytes() == before


async def test_write_failure_warns_once_and_keeps_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from minimallm._cache.store import CacheWriteError

    def full(self: PromptCache, rows: object, **kw: object) -> None:
        raise CacheWriteError(f"database or disk is full: {self.path}")

    monkeypatch.setattr(PromptCache, "put_many", full)
    server = counting_server()
    with pytest.warns(CacheWarning, match="not being cached.*disk is full") as caught:
        async with backend(server, tmp_path) as b:
            results = await b.run_batched([ask(f"x{i}") for i in range(50)])
            await b.generate(ask("late"))
    assert sum(issubclass(w.category, CacheWarning) for w in caught) == 1
    assert all(isinstance(r, MinimaLlmResponse) for r in results)


async def test_failures_are_not_cached(tmp_path: Path) -> None:
    server = FakeServer(lambda c, n: Script(status=400))
    async with backend(server, tmp_path) as b:
        r = await b.generate(ask("bad"))
    assert isinstance(r, MinimaLlmFailure)
    assert rows(tmp_path) == {}
