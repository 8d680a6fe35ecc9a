"""Batch invariants for random sizes, latencies, failures and limits (virtual time)."""

from __future__ import annotations

import random
import re
from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import FakeServer, Script
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._runtime.serve import RuntimeOptions


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 80),
    num_workers=st.integers(1, 12),
    max_outstanding=st.integers(1, 12),
    max_failures=st.one_of(st.none(), st.integers(0, 10)),
    seed=st.integers(0, 2**16),
    fail_rate=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_batch_invariants(
    n: int,
    num_workers: int,
    max_outstanding: int,
    max_failures: int | None,
    seed: int,
    fail_rate: float,
) -> None:
    rnd = random.Random(seed)
    plan = {
        f"p{i}": (
            rnd.uniform(0.0, 3.0),
            rnd.choice([400, 500]) if rnd.random() < fail_rate else 200,
        )
        for i in range(n)
    }

    def script(content: str, attempt: int) -> Script:
        latency, status = plan[content]
        return Script(
            latency=latency, status=status if attempt == 0 else (200 if status == 500 else status)
        )

    server = FakeServer(script)
    outcome: dict[str, object] = {}

    async def main() -> None:
        cfg = MinimaLlmConfig(
            base_url="http://fake.invalid",
            model="m",
            rpm=0,
            max_outstanding=max_outstanding,
            base_backoff_s=0.5,
            max_attempts=2,
            batch=BatchConfig(num_workers=num_workers, max_failures=max_failures, heartbeat_s=0),
        )
        backend = OpenAIMinimaLlm(
            cfg, options=RuntimeOptions(server.transport, random.Random(seed))
        )
        reqs = [
            MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"p{i}"}]) for i in range(n)
        ]
        try:
            outcome["results"] = await backend.run_batched(reqs, progress=lambda line: None)
        except BatchAbortedError as exc:
            outcome["aborted_at"] = trio.current_time()
            outcome["results"] = exc.results
        await backend.aclose()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    results = outcome["results"]
    assert isinstance(results, list) and len(results) == n
    for i, r in enumerate(results):
        if r is None:
            assert "aborted_at" in outcome
            continue
        assert r.request_id == f"id{i}"
        if isinstance(r, MinimaLlmResponse):
            assert r.text == f"echo: p{i}"
        else:
            assert isinstance(r, MinimaLlmFailure) and plan[f"p{i}"][1] == 400
    assert server.max_in_flight <= min(num_workers, max_outstanding)
    failures = sum(isinstance(r, MinimaLlmFailure) for r in results)
    if "aborted_at" in outcome:
        assert max_failures is not None and failures == max_failures + 1
        assert all(s.start <= outcome["aborted_at"] for s in server.sent)  # type: ignore[operator]
        assert server.in_flight == 0
    else:
        assert max_failures is None or failures <= max_failures
        assert all(r is not None for r in results)


_SURROGATE = re.compile("[\ud800-\udfff]")

GARBAGE = [
    b"",
    b"<html>not json",
    b"[1, 2]",
    b'{"choices": "x"}',
    b'{"choices": [{"message": {"content": null}}]}',
    b"[" * 100_000 + b"]" * 100_000,
    b'{"choices": [{"message": {"content": "\\ud800"}}]}',
    b"\xff\xfe\x00garbage",
]


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(0, 40),
    num_workers=st.integers(1, 8),
    max_failures=st.one_of(st.none(), st.integers(0, 6)),
    seed=st.integers(0, 2**16),
    cached=st.booleans(),
    callable_=st.booleans(),
)
def test_a_batch_returns_every_result_or_raises_one_exception_with_them(
    n: int,
    num_workers: int,
    max_failures: int | None,
    seed: int,
    cached: bool,
    callable_: bool,
    tmp_path_factory: object,
) -> None:
    """Random bad items, random server garbage, random exceptions from the user's own
    function: the batch returns exactly one result per item, index-aligned, or raises a
    single exception (never a group) that carries the results so far; it never hangs
    (virtual time); with the cache on, every completed answer is in the cache."""
    import sqlite3
    import tempfile

    rnd = random.Random(seed)
    bad = {i for i in range(n) if rnd.random() < 0.15}
    garbage = {f"p{i}": rnd.choice(GARBAGE) for i in range(n) if rnd.random() < 0.2}
    raises = {
        i: rnd.choice([ValueError("bad grade"), TypeError("int(None)"), KeyError("k")])
        for i in range(n)
        if rnd.random() < 0.1
    }

    def script(content: str, attempt: int) -> Script:
        latency = (hash(content) % 20) / 10
        if content in garbage and attempt == 0:
            return Script(latency=latency, body=garbage[content])
        return Script(latency=latency)

    reqs: list[object] = [
        MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"p{i}"}], extra={"x": object()})
        if i in bad
        else MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"p{i}"}])
        for i in range(n)
    ]
    cache_dir = tempfile.mkdtemp() if cached else None
    server = FakeServer(script)
    seen: dict[str, object] = {}

    async def main() -> None:
        cfg = MinimaLlmConfig(
            base_url="http://fake.invalid",
            model="m",
            rpm=0,
            max_attempts=2,
            base_backoff_s=0.1,
            cache_dir=cache_dir,
            batch=BatchConfig(num_workers=num_workers, max_failures=max_failures, heartbeat_s=0),
        )
        backend = OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))

        async def item(i: int) -> object:
            result = await backend.generate(reqs[i])  # type: ignore[arg-type]
            if i in raises:
                raise raises[i]
            return result

        try:
            with trio.fail_after(10_000):
                if callable_:
                    seen["results"] = await backend.run_batched_callable(range(n), item)
                else:
                    seen["results"] = await backend.run_batched(reqs)  # type: ignore[arg-type]
        except BaseException as exc:
            seen["error"] = exc
        await backend.aclose()

    # SQLite runs in worker threads, which a jumping clock would race (threads take real
    # time): here the cache's thread hops run inline, so virtual time stays exact.
    real_run_sync = trio.to_thread.run_sync

    async def inline(fn: Any, *args: Any, **_: Any) -> Any:
        await trio.lowlevel.checkpoint()
        return fn(*args)

    trio.to_thread.run_sync = inline  # type: ignore[assignment]
    try:
        trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    finally:
        trio.to_thread.run_sync = real_run_sync  # type: ignore[assignment]
    error = seen.get("error")
    assert not isinstance(error, BaseExceptionGroup)
    assert not isinstance(error, trio.TooSlowError)
    results = seen["results"] if error is None else error.results  # type: ignore[attr-defined]
    assert isinstance(results, list) and len(results) == n
    if error is None:
        assert all(r is not None for r in results)
    else:
        assert isinstance(error, BatchAbortedError | TypeError)
    for i, r in enumerate(results):
        if r is not None and not (callable_ and isinstance(r, MinimaLlmFailure)):
            assert r.request_id == f"r{i}"  # type: ignore[attr-defined]
    if cache_dir is not None and server.sent:
        # (the store writes a lone surrogate, which UTF-8 cannot hold, as U+FFFD)
        answered = {
            _SURROGATE.sub("\ufffd", r.text) for r in results if isinstance(r, MinimaLlmResponse)
        }
        with sqlite3.connect(f"{cache_dir}/minima_llm.db") as db:
            stored = {row[0] for row in db.execute("SELECT response_text FROM cache")}
        assert answered <= stored
