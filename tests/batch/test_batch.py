"""Batches in virtual time: alignment, heartbeat text, stall warning, failures, abort."""

from __future__ import annotations

import random

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
    OpenAIMinimaLlm,
    run_batched_callable,
)
from minimallm._runtime.serve import RuntimeOptions


def backend_for(
    server: FakeServer, batch: BatchConfig | None = None, **cfg: object
) -> OpenAIMinimaLlm:
    settings: dict[str, object] = {
        "base_url": "http://fake.invalid",
        "model": "m",
        "rpm": 0,
        "jitter": 0.0,
        "base_backoff_s": 1.0,
        "max_backoff_s": 1.0,
        "batch": batch or BatchConfig(heartbeat_s=0),
    }
    settings.update(cfg)
    return OpenAIMinimaLlm(
        MinimaLlmConfig(**settings),  # type: ignore[arg-type]
        options=RuntimeOptions(server.transport, random.Random(0)),
    )


def reqs(n: int, prefix: str = "p") -> list[MinimaLlmRequest]:
    return [
        MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"{prefix}{i}"}]) for i in range(n)
    ]


class Lines(list[str]):
    """A text stream for progress lines that remembers their (virtual) times too; a
    failure block (several lines written at once) is one entry."""

    def __init__(self) -> None:
        super().__init__()
        self.times: list[float] = []

    def write(self, text: str) -> None:
        self.append(text.rstrip("\n"))
        self.times.append(trio.current_time())

    def flush(self) -> None:
        pass

    def summary(self) -> str:
        return next(line for line in self if line.startswith("[minimallm] finished"))


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_results_are_index_aligned_and_summary_is_printed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=1.0 + (hash(c) % 7) / 10))
    lines = Lines()
    async with backend_for(server, BatchConfig(num_workers=5, heartbeat_s=0)) as backend:
        results = await backend.run_batched(reqs(23), progress=lines)
    assert [r.request_id for r in results] == [f"id{i}" for i in range(23)]
    assert [r.text for r in results] == [f"echo: p{i}" for i in range(23)]  # type: ignore[union-attr]
    assert len(lines) == 2 and lines[0].startswith("[minimallm] finished 23/23 in 0:00:0")
    assert lines[0].endswith("| ok 23 (cached 0) | failed 0 | retries 0")
    assert lines[1].startswith("[minimallm]   latency p50 1.")


async def test_heartbeat_lines_exact_text(autojump_clock: trio.testing.MockClock) -> None:
    # 4 workers, every item takes 3 s: 4 done at t=3, 8 at t=6, 12 at t=9 ...
    server = FakeServer(lambda c, n: Script(latency=3.0))
    lines = Lines()
    batch = BatchConfig(num_workers=4, heartbeat_s=5.0)
    async with backend_for(server, batch, max_outstanding=4) as backend:
        await backend.run_batched(reqs(20), progress=lines)
    assert lines.times[:4] == [5.0, 5.0, 10.0, 10.0]
    assert lines[:4] == [
        "[minimallm] 0:00:05 4/20 20.0% | 0.8/s | ETA 0:00:20",
        "[minimallm]   server 3.00s | waited 0.00s | 0.8/s HTTP",
        "[minimallm] 0:00:10 12/20 60.0% | 1.2/s | ETA 0:00:06",
        "[minimallm]   server 3.00s | waited 0.00s | 1.2/s HTTP",
    ]
    assert all(len(line) < 100 for line in lines)
    assert lines[-2] == (
        "[minimallm] finished 20/20 in 0:00:15 | ok 20 (cached 0) | failed 0 | retries 0"
    )
    assert lines[-1].startswith("[minimallm]   latency p50 3.")
    assert lines[-1].endswith("| tokens in 60 out 40")


async def test_heartbeat_zero_prints_no_heartbeat(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer(lambda c, n: Script(latency=30.0))
    lines = Lines()
    async with backend_for(server, BatchConfig(heartbeat_s=0)) as backend:
        await backend.run_batched(reqs(3), progress=lines)
    assert len(lines) == 2 and "finished" in lines[0]


async def test_stall_warning_says_what_is_going_on(autojump_clock: trio.testing.MockClock) -> None:
    # p0 is refused once (429, Retry-After 25 s): only p0 waits, nobody else pauses; p1
    # and p2 take 100 s; two connections. At 20 s nothing holds the client back (p0
    # sleeps its Retry-After); at 40 s p0 waits for a connection: MAX_OUTSTANDING.
    def script(content: str, n: int) -> Script:
        if content == "p0":
            return (
                Script(latency=1.0, status=429, headers={"retry-after": "25"})
                if n == 0
                else Script()
            )
        return Script(latency=100.0)

    server = FakeServer(script)
    lines = Lines()
    batch = BatchConfig(num_workers=3, heartbeat_s=0, stall_s=20.0)
    async with backend_for(server, batch, max_outstanding=2, cooldown_cap_s=30.0) as backend:
        await backend.run_batched(reqs(3), progress=lines)
    assert lines.times[:4] == [20.0, 20.0, 40.0, 40.0]
    assert lines[:4] == [
        "[minimallm] STALL: nothing finished for 0:00:20 | 3 in progress, oldest 0:00:20",
        "[minimallm]   nothing holds it back | HTTP in flight 2 | server 1.00s",
        "[minimallm] STALL: nothing finished for 0:00:40 | 3 in progress, oldest 0:00:40",
        "[minimallm]   held back by MAX_OUTSTANDING 2 | HTTP in flight 2 | server 1.00s",
    ]


async def test_a_stall_counts_from_the_last_item_that_finished(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """p0 ends at 5 s, p1 takes 100 s: nothing finished for 20 s at 25 s, not at 20 s
    (the Monitor reads when the latest item ended from the batch's tally)."""
    server = FakeServer(lambda c, n: Script(latency=5.0 if c == "p0" else 100.0))
    lines = Lines()
    batch = BatchConfig(num_workers=2, heartbeat_s=0, stall_s=20.0)
    async with backend_for(server, batch) as backend:
        await backend.run_batched(reqs(2), progress=lines)
    stalls = [(t, line) for t, line in zip(lines.times, lines, strict=True) if "STALL" in line]
    assert stalls[0] == (
        25.0,
        "[minimallm] STALL: nothing finished for 0:00:20 | 1 in progress, oldest 0:00:25",
    )


async def test_first_failures_are_printed_in_the_reference_format(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=0.5, status=500, body=b"overloaded"))
    lines = Lines()
    batch = BatchConfig(num_workers=1, heartbeat_s=0, print_first_failures=2, max_failures=None)
    async with backend_for(
        server, batch, max_attempts=3, cooldown_cap_s=1.0, timeout_s=60.0
    ) as backend:
        results = await backend.run_batched(reqs(3), progress=lines)
    assert all(isinstance(r, MinimaLlmFailure) for r in results)
    failures = [line for line in lines if line.startswith("Failure")]
    assert len(failures) == 2
    assert failures[0] == (
        "Failure 1: id0\n"
        "    HTTPError: status=500\n"
        "    attempts=3, timeout=60.0s [+0.0s, +1.5s, +3.0s]\n"
        "    body=overloaded"
    )


@pytest.mark.parametrize("max_failures", [0, 1, 3])
async def test_abort_tolerates_n_and_aborts_on_n_plus_1(
    autojump_clock: trio.testing.MockClock, max_failures: int
) -> None:
    bad = max_failures + 1

    def script(content: str, n: int) -> Script:
        i = int(content[1:])
        return Script(latency=1.0 + i, status=400 if i < bad else 200)

    # exactly max_failures failures: tolerated
    tolerated = FakeServer(
        lambda c, n: Script(latency=1.0, status=400 if int(c[1:]) < max_failures else 200)
    )
    batch = BatchConfig(num_workers=4, heartbeat_s=0, max_failures=max_failures)
    async with backend_for(tolerated, batch) as backend:
        results = await backend.run_batched(reqs(8), progress=Lines())
    assert sum(isinstance(r, MinimaLlmFailure) for r in results) == max_failures

    server = FakeServer(script)
    t0 = trio.current_time()
    async with backend_for(server, batch) as backend:
        with pytest.raises(BatchAbortedError) as info:
            await backend.run_batched(reqs(50), progress=Lines())
    err = info.value
    assert isinstance(err, RuntimeError)
    assert str(err).startswith(f"Aborting batch: {bad} failures (max_failures={max_failures})")
    assert "id0: HTTPError status=400 after 1 attempt(s)" in str(err)
    assert len(err.results) == 50
    assert sum(isinstance(r, MinimaLlmFailure) for r in err.results) == bad
    # in-flight work was cancelled at once, nothing was sent after the abort
    abort_time = t0 + 1.0 + max_failures  # when the (max_failures+1)-th failure lands
    assert trio.current_time() == pytest.approx(abort_time)
    assert all(s.start <= abort_time for s in server.sent)
    unfinished = [s for s in server.sent if s.start + 1.0 + int(s.content[1:]) > abort_time]
    assert unfinished and all(s.cancelled and s.end == abort_time for s in unfinished)


async def test_max_failures_none_never_aborts(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer(lambda c, n: Script(status=401))
    async with backend_for(server, BatchConfig(max_failures=None, heartbeat_s=0)) as backend:
        results = await backend.run_batched(reqs(40), progress=Lines())
    assert all(isinstance(r, MinimaLlmFailure) for r in results)


async def test_callable_none_stays_in_place_and_exceptions_are_failures(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def fn(x: int) -> int | None:
        await trio.sleep(10 - x)
        if x == 3:
            raise ValueError("three is bad")
        return None if x % 2 else x * 10

    lines = Lines()
    results = await run_batched_callable(
        list(range(6)), fn, BatchConfig(heartbeat_s=0), progress=lines
    )
    assert results[:3] == [0, None, 20]
    assert isinstance(results[3], MinimaLlmFailure) and results[3].message == "three is bad"
    assert results[3].request_id == "item-3" and results[3].error_type == "ValueError"
    assert results[4:] == [40, None]
    assert "none 2" in lines.summary() and "failed 1" in lines.summary()


async def test_programming_errors_stop_the_batch_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    started: list[int] = []

    async def fn(x: int) -> int:
        started.append(x)
        await trio.sleep(1)
        if x == 0:
            return x.nonexistent  # type: ignore[attr-defined,no-any-return]
        await trio.sleep(100)
        return x

    with pytest.raises(AttributeError):
        await run_batched_callable(
            list(range(100)), fn, BatchConfig(num_workers=4, heartbeat_s=0), progress=Lines()
        )
    assert trio.current_time() == 1.0 and started == [0, 1, 2, 3]


async def test_cancelling_a_batch_leaves_nothing_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=100.0))
    lines = Lines()
    backend = backend_for(server, BatchConfig(num_workers=8, heartbeat_s=0), max_outstanding=4)
    with trio.move_on_after(5.0):
        await backend.run_batched(reqs(1000), progress=lines)
    await trio.testing.wait_all_tasks_blocked()
    assert server.in_flight == 0 and len(server.sent) == 4
    assert all(s.cancelled and s.end == 5.0 for s in server.sent)
    assert lines.summary().startswith("[minimallm] finished 0/1,000")
    await backend.aclose()
    assert all(t.closed for t in server.transports)
