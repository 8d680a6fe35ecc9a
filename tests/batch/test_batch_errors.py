"""How a batch ends when something goes wrong: always one exception (never a group),
completed results reachable, a bad item only fails itself."""

from __future__ import annotations

import asyncio
import sqlite3
import warnings
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script, backend_for, req
from minimallm import (
    BackendClosedError,
    BackendFailedError,
    BatchAbortedError,
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
    run_batched_callable,
)
from minimallm._errors import CacheWarning
from minimallm.mock import MockServerThread


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


# -- a user's programming error -----------------------------------------------------------


async def test_a_type_error_in_the_users_function_is_raised_as_itself_with_the_results(
    autojump_clock: trio.testing.MockClock,
) -> None:
    grades: list[str | None] = ["1", "2", "3", None, "4"]

    async def grade(i: int) -> int:
        await trio.sleep(i)
        return int(grades[i])  # type: ignore[arg-type]  # int(None): the user's bug

    with pytest.raises(TypeError) as info:
        await run_batched_callable(range(5), grade, BatchConfig(heartbeat_s=0))
    error = info.value
    assert not isinstance(error, BaseExceptionGroup)
    assert any("item 3 (3)" in note for note in error.__notes__)
    assert error.results[:3] == [1, 2, 3]  # type: ignore[attr-defined]
    assert trio.current_time() == 3.0  # stopped at once, item 4 never finished


def test_the_same_from_asyncio() -> None:
    async def grade(x: Any) -> int:
        await asyncio.sleep(0)
        return int(x)

    async def main() -> None:
        with pytest.raises(TypeError) as info:
            await run_batched_callable(["1", None, "3"], grade, BatchConfig(heartbeat_s=0))
        assert any("item 1 (None)" in n for n in info.value.__notes__)
        assert len(info.value.results) == 3  # type: ignore[attr-defined]

    asyncio.run(main())


# -- bad requests fail alone ----------------------------------------------------------------

BAD = {
    1: MinimaLlmRequest("b1", [{"role": "user", "content": "x"}], extra={"x": object()}),
    2: MinimaLlmRequest("b2", [{"role": "user", "content": "lone \ud800 surrogate"}]),
    3: MinimaLlmRequest("b3", "hi"),  # type: ignore[arg-type]
    4: MinimaLlmRequest("b4", [None]),  # type: ignore[list-item]
    5: {"request_id": "b5", "messages": []},  # not a request at all
}


async def test_a_request_that_cannot_be_sent_is_that_items_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    reqs = [BAD.get(i, req(i)) for i in range(8)]
    server = FakeServer(lambda c, n: Script(latency=1.0))
    async with backend_for(server) as backend:
        results = await backend.run_batched(reqs)  # type: ignore[arg-type]
    assert [type(r).__name__ for r in results] == ["MinimaLlmResponse"] + [
        "MinimaLlmFailure"
    ] * 5 + ["MinimaLlmResponse"] * 2
    failures = [r for r in results if isinstance(r, MinimaLlmFailure)]
    assert all(f.error_type == "InvalidRequest" and f.attempts == 0 for f in failures)
    messages = [f.message for f in failures]
    assert messages[0].startswith("request 1 (id 'b1'): extra['x'] is an object of type object")
    assert messages[1].startswith("request 2 (id 'b2'): messages[0]['content'] contains a lone")
    assert messages[2].startswith("request 3 (id 'b3'): messages must be a list")
    assert messages[3].startswith("request 4 (id 'b4'): messages[0] is None")
    assert messages[4].startswith("request 5: ")
    assert len(server.sent) == 3  # the bad ones never left


# -- failures all alike, or of single items ---------------------------------------------------


async def test_failures_all_alike_from_the_start_stop_early_with_the_fix(
    autojump_clock: trio.testing.MockClock,
) -> None:
    body = b'{"error": {"message": "Incorrect API key provided"}}'
    server = FakeServer(lambda c, n: Script(latency=0.1, status=401, body=body))
    async with backend_for(server) as backend:
        with pytest.raises(BatchAbortedError) as info:
            await backend.run_batched([req(i) for i in range(1000)])
    assert str(info.value) == (
        "Aborting batch: 5 failures: every request failed: HTTP 401: Incorrect API key "
        "provided (check OPENAI_API_KEY (or OPENAI_TOKEN))"
    )
    assert len(server.sent) <= 8  # not the 26 of the failure budget
    # the 5th stopped it; the ones that ended at the very same instant are kept too
    assert 5 <= sum(isinstance(r, MinimaLlmFailure) for r in info.value.results) <= 8


async def test_failures_of_single_items_count_against_the_budget_and_say_so(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def script(content: str, n: int) -> Script:
        i = int(content[1:])
        if i % 3 == 0:  # every third prompt is too long, each in its own way
            body = b'{"error": {"message": "prompt of %d tokens is too long"}}' % (9000 + i)
            return Script(latency=0.1, status=400, body=body)
        return Script(latency=0.1)

    server = FakeServer(script)
    batch = BatchConfig(heartbeat_s=0, num_workers=4, max_failures=5)
    async with backend_for(server, batch=batch) as backend:
        with pytest.raises(BatchAbortedError) as info:
            await backend.run_batched([req(i) for i in range(100)])
    message = str(info.value)
    assert message.startswith("Aborting batch: 6 failures (max_failures=5): failures of single")
    assert "raise BATCH_MAX_FAILURES" in message
    assert "id3: HTTPError status=400 after 1 attempt(s): HTTP 400: prompt of 9003" in message
    assert len(info.value.failures) == 6


# -- the backend goes away ---------------------------------------------------------------------


async def test_aclose_during_a_batch_raises_one_backend_closed_error_with_the_results(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=float(c[1:])))
    backend = backend_for(server)
    caught: list[BaseException] = []

    async def batch() -> None:
        try:
            await backend.run_batched([req(i) for i in range(1, 40)])
        except BaseException as exc:
            caught.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(batch)
        await trio.sleep(10.5)
        await backend.aclose()
    [error] = caught
    assert type(error) is BackendClosedError
    done = [r for r in error.results if r is not None]  # type: ignore[attr-defined]
    # 4 workers: items 1-4 from t=0, then 5 at 1 (done 6), 6 at 2 (done 8), 7 at 3 (done 10)
    assert [r.request_id for r in done] == [f"id{i}" for i in range(1, 8)]


async def test_an_actor_that_fails_answers_every_waiting_caller_with_why(
    autojump_clock: trio.testing.MockClock,
) -> None:
    class Broken(Exception):
        pass

    def script(content: str, n: int) -> Script:
        if content == "p3":
            return Script(latency=2.0, raises=Broken("a bug in a transport"))
        return Script(latency=5.0)

    async with backend_for(FakeServer(script)) as backend:
        with pytest.raises(BackendFailedError) as info:
            await backend.run_batched([req(i) for i in range(8)])
        error = info.value
        assert str(error).startswith("minimallm's Worker ")
        assert str(error).endswith("failed: Broken: a bug in a transport")
        assert isinstance(error.__cause__, Broken)
        # a later caller is told the same, until the backend is closed ...
        with pytest.raises(BackendFailedError) as later:
            await backend.generate(req(99))
        assert str(later.value) == str(error)
        assert isinstance(later.value.__cause__, Broken)
        # ... and after aclose() the next call starts a fresh runtime
        await backend.aclose()
        assert isinstance(await backend.generate(req(99)), MinimaLlmResponse)


# -- aclose at any moment of a cached batch: fast, and nothing completed is lost -----------


def _rows(cache_dir: Path) -> set[str]:
    with sqlite3.connect(cache_dir / "minima_llm.db") as db:
        return {row[0] for row in db.execute("SELECT response_text FROM cache")}


def _cached_batch_config(mock: MockServerThread, cache_dir: Path) -> MinimaLlmConfig:
    return MinimaLlmConfig(
        base_url=mock.base_url,
        model="mock-model",
        rpm=0,
        max_outstanding=16,
        cache_dir=str(cache_dir),
        batch=BatchConfig(heartbeat_s=0, num_workers=16),
    )


def _requests() -> list[MinimaLlmRequest]:
    return [req(i, f"p{i} #mock:latency={0.002 * (i % 50):.3f}") for i in range(3000)]


@pytest.mark.realtime
@pytest.mark.parametrize("after_s", [0.05, 0.3])
def test_aclose_during_a_cached_batch_from_trio_asyncio_and_sync(
    mock_server: MockServerThread, tmp_path: Path, after_s: float
) -> None:
    import time

    def completed(results: list[Any]) -> set[str]:
        return {r.text for r in results if isinstance(r, MinimaLlmResponse)}

    async def trio_main(backend: OpenAIMinimaLlm) -> tuple[set[str], float]:
        got: list[Any] = []

        async def batch() -> None:
            try:
                got.extend(await backend.run_batched(_requests()))
            except BackendClosedError as exc:
                got.extend(exc.results)  # type: ignore[attr-defined]

        async with trio.open_nursery() as nursery:
            nursery.start_soon(batch)
            await trio.sleep(after_s)
            start = time.monotonic()
            await backend.aclose()
            took = time.monotonic() - start
        return completed(got), took

    async def asyncio_main(backend: OpenAIMinimaLlm) -> tuple[set[str], float]:
        task = asyncio.ensure_future(backend.run_batched(_requests()))
        await asyncio.sleep(after_s)
        start = time.monotonic()
        await backend.aclose()
        took = time.monotonic() - start
        try:
            got = await task
        except BackendClosedError as exc:
            got = exc.results  # type: ignore[attr-defined]
        return completed(got), took

    def sync_main(backend: OpenAIMinimaLlm) -> tuple[set[str], float]:
        import threading

        got: list[Any] = []

        def batch() -> None:
            try:
                got.extend(backend.run_batched_sync(_requests()))
            except BackendClosedError as exc:
                got.extend(exc.results)  # type: ignore[attr-defined]

        thread = threading.Thread(target=batch)
        thread.start()
        time.sleep(after_s)  # the wall clock is the point: a real thread racing aclose
        start = time.monotonic()
        backend.close_sync()
        took = time.monotonic() - start
        thread.join(5)
        return completed(got), took

    for name, run in [
        ("trio", lambda b: trio.run(trio_main, b)),
        ("asyncio", lambda b: asyncio.run(asyncio_main(b))),
        ("sync", sync_main),
    ]:
        cache_dir = tmp_path / name
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always", CacheWarning)
            done, took = run(OpenAIMinimaLlm(_cached_batch_config(mock_server, cache_dir)))
        assert took < 1.0, name
        assert done <= _rows(cache_dir), name  # every completed answer is on disk
        # closing is not a cache failure: no "cache read failed, asking the server"
        assert [str(w.message) for w in seen if w.category is CacheWarning] == [], name
