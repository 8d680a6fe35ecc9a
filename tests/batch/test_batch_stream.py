"""Streamed batch results: completion order and input order, lazy input, bounded
read-ahead, early exit, errors as single exceptions; from trio, asyncio and sync."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
    stream_batched_callable,
)
from minimallm._runtime.serve import RuntimeOptions
from minimallm.mock import MockServerThread


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def backend_for(server: FakeServer, **batch: object) -> OpenAIMinimaLlm:
    cfg = MinimaLlmConfig(
        base_url="http://fake.invalid",
        model="m",
        rpm=0,
        base_backoff_s=1.0,
        max_backoff_s=1.0,
        jitter=0.0,
        batch=BatchConfig(**{"heartbeat_s": 0, "num_workers": 4, **batch}),  # type: ignore[arg-type]
    )
    return OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))


def req(i: int) -> MinimaLlmRequest:
    return MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"p{i}"}])


class Lazy:
    """A generator of 10^6 requests that counts how many were taken from it."""

    def __init__(self) -> None:
        self.taken = 0

    def requests(self) -> Iterator[MinimaLlmRequest]:
        for i in range(1_000_000):
            self.taken += 1
            yield req(i)


def slow_first(content: str, n: int) -> Script:
    """p0 takes 10 s, every other item 1 s."""
    return Script(latency=10.0 if content == "p0" else 1.0)


async def test_completion_order_yields_each_result_as_soon_as_it_is_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[int, float]] = []
    async with (
        backend_for(FakeServer(slow_first)) as backend,
        backend.stream_batched([req(i) for i in range(8)]) as results,
    ):
        async for index, result in results:
            assert isinstance(result, MinimaLlmResponse) and result.request_id == f"id{index}"
            seen.append((index, trio.current_time()))
    assert sorted(i for i, _ in seen) == list(range(8))
    assert {i for i, t in seen if t == 1.0} == {1, 2, 3}  # the first three, at once
    assert seen[-1] == (0, 10.0)  # p0 last, the moment it finished


async def test_input_order_waits_only_for_the_next_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[tuple[int, float]] = []
    async with (
        backend_for(FakeServer(slow_first)) as backend,
        backend.stream_batched([req(i) for i in range(8)], ordered=True) as results,
    ):
        async for index, _ in results:
            seen.append((index, trio.current_time()))
    assert [i for i, _ in seen] == list(range(8))
    assert seen[0] == (0, 10.0)  # held back by p0 only
    assert all(t == 10.0 for _, t in seen[:7])  # items 1..6 finished meanwhile
    assert seen[7] == (7, 10.0)  # the 4 workers ran 1..6 and 7 while p0 was out


async def test_a_lazy_input_is_read_only_a_window_ahead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A generator of 10^6 requests: the ordered stream reads at most ``window`` ahead
    of what it has handed out, and stopping early stops the batch."""
    lazy = Lazy()
    server = FakeServer(slow_first)
    async with backend_for(server, num_workers=8) as backend:
        async with backend.stream_batched(lazy.requests(), ordered=True, total=10**6) as results:
            async for index, _ in results:
                if index == 99:
                    break
        window = max(1024, 4 * 8)
        assert 100 <= lazy.taken <= 100 + window + 8
        sent = len(server.sent)
        await trio.sleep(100)
        assert len(server.sent) == sent  # nothing more was sent after the early exit
        assert server.in_flight == 0


async def test_completion_order_reads_only_a_window_ahead_of_a_slow_consumer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Unordered too, the input is read at most ``window`` items ahead of what the
    consumer has taken: no finished result waits outside the window (the engine hands
    each over without waiting)."""
    lazy = Lazy()
    async with backend_for(FakeServer(slow_first), num_workers=8) as backend:
        async with backend.stream_batched(lazy.requests(), total=10**6) as results:
            consumed = 0
            async for _ in results:
                consumed += 1
                await trio.sleep(10_000)  # the batch runs as far ahead as it may
                break
        window = max(1024, 4 * 8)
        assert consumed == 1
        assert window < lazy.taken <= consumed + window


async def test_an_abort_is_raised_from_the_loop_as_itself(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=1.0, status=400 if c < "p5" else 200))
    got: list[int] = []
    with pytest.raises(BatchAbortedError, match=r"^Aborting batch: 3 failures"):
        async with (
            backend_for(server, max_failures=2, num_workers=1) as backend,
            backend.stream_batched([req(i) for i in range(20)], ordered=True) as results,
        ):
            async for index, _ in results:
                got.append(index)
    assert got == [0, 1, 2]  # the third failure was delivered before the abort


async def test_an_error_in_the_loop_body_stops_the_batch_and_is_raised_alone(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=1.0))
    with pytest.raises(KeyError, match="mine"):
        async with (
            backend_for(server) as backend,
            backend.stream_batched([req(i) for i in range(100)]) as results,
        ):
            async for _ in results:
                raise KeyError("mine")
    assert server.in_flight == 0 and len(server.sent) <= 8


def test_the_same_stream_from_asyncio_and_from_sync_code(mock_server: MockServerThread) -> None:
    cfg = MinimaLlmConfig(
        base_url=mock_server.base_url,
        model="mock-model",
        rpm=0,
        batch=BatchConfig(heartbeat_s=0, num_workers=8),
    )
    reqs = [req(i) for i in range(300)]

    async def via_asyncio() -> list[tuple[int, str]]:
        out = []
        async with (
            OpenAIMinimaLlm(cfg) as backend,
            backend.stream_batched(reqs, ordered=True) as results,
        ):
            async for index, result in results:
                assert isinstance(result, MinimaLlmResponse)
                out.append((index, result.text))
        return out

    expected = [(i, f"echo: p{i}") for i in range(300)]
    assert asyncio.run(via_asyncio()) == expected
    backend = OpenAIMinimaLlm(cfg)
    with backend.stream_batched_sync(iter(reqs), ordered=True, total=300) as results:
        got = [(i, r.text) for i, r in results if isinstance(r, MinimaLlmResponse)]
    backend.close_sync()
    assert got == expected


def test_breaking_out_of_a_sync_stream_stops_the_batch(mock_server: MockServerThread) -> None:
    cfg = MinimaLlmConfig(
        base_url=mock_server.base_url,
        model="mock-model",
        rpm=0,
        max_outstanding=4,
        batch=BatchConfig(heartbeat_s=0, num_workers=4),
    )
    hanging = [
        MinimaLlmRequest(f"h{i}", [{"role": "user", "content": f"h{i} #mock:fault=hang"}])
        for i in range(1, 50)
    ]
    backend = OpenAIMinimaLlm(cfg)
    with backend.stream_batched_sync([req(0), *hanging]) as results:
        for index, _ in results:
            assert index == 0
            break
    assert mock_server.wait_for(lambda s: s.in_flight == 0, timeout_s=5.0)
    backend.close_sync()


async def test_callables_stream_too_and_a_none_is_a_value(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fn(x: int) -> int | None:
        await trio.sleep(5 - x)
        return None if x == 2 else x * 10

    got = []
    async with stream_batched_callable(range(5), fn, BatchConfig(heartbeat_s=0)) as results:
        async for index, value in results:
            got.append((index, value))
    assert got == [(4, 40), (3, 30), (2, None), (1, 10), (0, 0)]


async def test_an_invalid_request_is_a_failure_value_in_the_stream(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bad = MinimaLlmRequest("bad", [{"role": "user", "content": "x"}], extra={"x": object()})
    async with (
        backend_for(FakeServer(lambda c, n: Script(latency=1.0))) as backend,
        backend.stream_batched([req(0), bad, req(2)], ordered=True) as results,
    ):
        got = [r async for _, r in results]
    assert isinstance(got[1], MinimaLlmFailure) and got[1].error_type == "InvalidRequest"
    assert got[1].message.startswith("request 1 (id 'bad'): extra['x']")
    assert [type(r).__name__ for r in got] == ["MinimaLlmResponse", "MinimaLlmFailure"] * 1 + [
        "MinimaLlmResponse"
    ]


def test_iterating_a_stream_without_its_block_says_how_instead_of_hanging() -> None:
    server = FakeServer()
    usage = r"async with backend\.stream_batched\(requests\) as results"

    async def under_trio() -> None:
        async with backend_for(server) as backend:
            with pytest.raises(TypeError, match=usage):
                async for _ in backend.stream_batched([req(0)]):  # type: ignore[attr-defined]
                    pass

    trio.run(under_trio, clock=trio.testing.MockClock(autojump_threshold=0))
    assert server.sent == []
    cfg = MinimaLlmConfig(base_url="http://127.0.0.1:9/v1", model="m", batch=BatchConfig())

    async def under_asyncio() -> None:
        async with OpenAIMinimaLlm(cfg) as backend:
            with pytest.raises(TypeError, match=usage):
                async for _ in backend.stream_batched([req(0)]):  # type: ignore[attr-defined]
                    pass

    asyncio.run(under_asyncio())
    backend = OpenAIMinimaLlm(cfg)
    with pytest.raises(TypeError, match=r"with backend\.stream_batched_sync\(requests\) as"):
        for _ in backend.stream_batched_sync([req(0)]):  # type: ignore[attr-defined]
            pass
    backend.close_sync()


def test_a_cached_stream_hands_over_results_in_bursts_not_one_wake_up_each(
    tmp_path: Path,
) -> None:
    """A fully cached rerun is bounded by the cache, not by the scheduler: results that
    are ready cross from the engine to the loop without a checkpoint each (it took
    two scheduler passes per cached item, half the time of a cached run-batch)."""
    server = FakeServer()
    cfg = MinimaLlmConfig(
        base_url="http://fake.invalid",
        model="m",
        rpm=0,
        cache_dir=str(tmp_path),
        batch=BatchConfig(heartbeat_s=0, num_workers=8),
    )
    n = 3000

    class Passes(trio.abc.Instrument):
        count = 0

        def before_run(self) -> None:
            pass

        def before_io_wait(self, timeout: float) -> None:
            self.count += 1  # one per pass of trio's scheduler

    async def run(passes: Passes | None) -> int:
        backend = OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport))
        async with backend:
            if passes is not None:
                trio.lowlevel.add_instrument(passes)
            got = 0
            async with backend.stream_batched((req(i) for i in range(n)), ordered=True) as out:
                async for _, result in out:
                    assert isinstance(result, MinimaLlmResponse)
                    got += 1
            if passes is not None:
                trio.lowlevel.remove_instrument(passes)
            return got

    assert trio.run(run, None) == n
    sent = len(server.sent)
    passes = Passes()
    assert trio.run(run, passes) == n
    assert len(server.sent) == sent  # all from the cache
    assert passes.count < 0.1 * n, passes.count  # ~0.04 per item now, 2 before
