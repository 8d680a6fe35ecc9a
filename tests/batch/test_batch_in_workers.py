"""A request batch's items run in the Workers' own tasks (``_batch/engine.py`` with a
pool, :class:`~minimallm.actors.messages.ItemJob`): no task per item wakes to hand a
request over or to take its answer back; a door that has to wait for anything but its
own attempt lets go of its Worker; the batch stops and is cancelled as cleanly as with
runner tasks, and the Workers go on serving."""

from __future__ import annotations

import collections
from pathlib import Path

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script, backend_for, req
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    MinimaLlmFailure,
    MinimaLlmResponse,
    TokenBudgetExceededError,
)


class _Steps(trio.abc.Instrument):
    """Task steps by the name of the function the task runs."""

    def __init__(self) -> None:
        self.by_name: collections.Counter[str] = collections.Counter()

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self.by_name[task.coro.cr_code.co_qualname] += 1


async def test_no_task_wakes_per_item_besides_the_worker_that_runs_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # with runner tasks, each item woke its runner (>= 1 step per item) and a Worker
    # woke for each job handed over; here a Worker steps about once per attempt (its
    # answer), and the batch's own tasks only at its start and end
    steps = _Steps()
    backend = backend_for(FakeServer(lambda c, n: Script(latency=0.05)))
    trio.lowlevel.add_instrument(steps)
    try:
        results = await backend.run_batched([req(i) for i in range(400)])
    finally:
        trio.lowlevel.remove_instrument(steps)
        await backend.aclose()
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    batch_tasks = sum(n for name, n in steps.by_name.items() if name.startswith("run_batch."))
    assert batch_tasks <= 20, steps.by_name
    assert steps.by_name["Worker.run"] <= 1.2 * 400, steps.by_name


async def test_identical_requests_wait_for_their_leader_without_holding_its_worker(
    mock_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    # One Worker. The leader's first attempt fails (500), so it retries through the
    # queue; the identical request waits for the leader's answer (single flight). Had
    # it waited in the Worker's task, the leader's retry would wait for that Worker for
    # ever. (The clock jumps only after 0.3 s of real idleness: the cache's SQLite
    # thread must not let it run to the deadline.)
    mock_clock.autojump_threshold = 0.3
    server = FakeServer(lambda c, n: Script(latency=0.1, status=500 if n == 0 else 200))
    backend = backend_for(server, max_outstanding=1, cache_dir=str(tmp_path))
    try:
        with trio.fail_after(60):
            results = await backend.run_batched([req(0, "same"), req(1, "same")])
    finally:
        await backend.aclose()
    assert [r.request_id for r in results] == ["id0", "id1"]
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert server.attempts_by_content == {"same": 2}  # one request's two attempts


async def test_a_stopped_batch_leaves_the_workers_serving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Items 0-2 fail at once and stop the batch (max_failures=2) while the others are
    # queued or in a Worker's attempt; the Workers drop the batch's items and serve
    # the next call on the same backend.
    def script(content: str, n: int) -> Script:
        return Script(latency=0.01 if content in ("p0", "p1", "p2") else 5.0, status=400)

    server = FakeServer(script)
    backend = backend_for(server, batch=BatchConfig(heartbeat_s=0, num_workers=4, max_failures=2))
    try:
        with pytest.raises(BatchAbortedError) as info:
            await backend.run_batched([req(i) for i in range(50)])
        assert trio.current_time() < 1.0  # no wait for the items in their 5 s attempts
        partial = info.value.results  # type: ignore[attr-defined]
        assert sum(isinstance(r, MinimaLlmFailure) for r in partial) == 3
        assert partial[3:] == [None] * 47
        sent_before = len(server.sent)
        assert sent_before < 10  # the queued items never went out
        with trio.fail_after(10):
            again = await backend.generate(req(99))
        assert isinstance(again, MinimaLlmFailure)  # a 400, served by a Worker
        assert len(server.sent) == sent_before + 1
    finally:
        await backend.aclose()


async def test_a_batch_cancelled_from_outside_ends_at_once_and_the_workers_go_on(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=30.0 if n == 0 else 0.1))
    backend = backend_for(server)
    try:
        with trio.move_on_after(1.0) as scope:
            await backend.run_batched([req(i) for i in range(20)])
        assert scope.cancelled_caught
        assert trio.current_time() < 1.5  # no wait for the 30 s attempts
        assert all(s.cancelled for s in server.sent)  # the Workers closed them
        with trio.fail_after(10):
            again = await backend.generate(req(0))  # its second attempt: 0.1 s
        assert isinstance(again, MinimaLlmResponse)
    finally:
        await backend.aclose()


async def test_a_batch_stopped_by_its_own_item_leaves_that_worker_serving_the_next_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # The item that spends max_total_tokens stops its batch from its Worker's own task,
    # cancelling the scope its Worker runs items in, with no checkpoint left to end
    # it; the next job that Worker takes (a caller's, waiting meanwhile) must not run
    # in that cancelled scope.
    server = FakeServer(lambda c, n: Script(latency=0.01))
    backend = backend_for(
        server,
        max_outstanding=1,
        batch=BatchConfig(heartbeat_s=0, num_workers=2, max_total_tokens=8),
    )
    answered: list[object] = []

    async def caller() -> None:
        await trio.sleep(0.015)  # queued while the one Worker runs the batch's item
        with trio.fail_after(60):
            answered.append(await backend.generate(req(99, "hello")))

    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(caller)
            with pytest.raises(TokenBudgetExceededError):
                await backend.run_batched([req(i) for i in range(10)])
    finally:
        await backend.aclose()
    assert [type(r) for r in answered] == [MinimaLlmResponse]
    assert [s.content for s in server.sent if s.cancelled] == []
