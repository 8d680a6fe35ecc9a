"""JobQueue: the Workers' shared inbox (first in, first out; a waiting Worker gets a job
handed straight to it, the longest-waiting first; cancellation and close as a trio
channel's)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm.actors.jobs import JobQueue
from minimallm.actors.messages import Job, Reply


def job(number: int) -> Job:
    reply: Reply[Any] = Reply()
    return Job(b"", reply, order=number)


async def test_jobs_come_out_in_the_order_they_went_in() -> None:
    q = JobQueue()
    assert q.take_nowait() is None  # empty: None, no exception
    for i in range(3):
        q.put(job(i))
    assert q.statistics() == (3, 0)
    first, second = q.take_nowait(), await q.take()
    assert first is not None and (first.order, second.order) == (0, 1)
    last = q.take_nowait()
    assert last is not None and last.order == 2
    assert q.take_nowait() is None


async def test_a_job_goes_straight_to_the_worker_that_waited_longest() -> None:
    q = JobQueue()
    got: list[tuple[str, int]] = []

    async def worker(name: str) -> None:
        got.append((name, (await q.take()).order))

    async with trio.open_nursery() as nursery:
        for name in ("first", "second"):
            nursery.start_soon(worker, name)
            await trio.testing.wait_all_tasks_blocked()
        assert q.statistics() == (0, 2)
        q.put(job(7))
        assert q.statistics() == (0, 1)  # handed over, not queued
        q.put(job(8))
    # which Worker got which job (trio may run the two in either order afterwards)
    assert sorted(got) == [("first", 7), ("second", 8)]


async def test_a_worker_cancelled_while_waiting_leaves_the_queue() -> None:
    q = JobQueue()
    got: list[int] = []
    leaving = trio.CancelScope()

    async def leaver() -> None:
        with leaving:
            await q.take()
        got.append(-1)  # left without a job

    async def worker() -> None:
        got.append((await q.take()).order)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(leaver)  # waits longest, then leaves
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        assert q.statistics() == (0, 2)
        leaving.cancel()
        await trio.testing.wait_all_tasks_blocked()
        assert q.statistics() == (0, 1)
        q.put(job(1))  # to the one still waiting, not to the one that left
    assert got == [-1, 1] and q.statistics() == (0, 0)


async def test_close_ends_waiting_workers_and_refuses_new_jobs() -> None:
    q = JobQueue()
    ended: list[str] = []

    async def worker() -> None:
        with pytest.raises(trio.EndOfChannel):
            await q.take()
        ended.append("ended")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        await trio.testing.wait_all_tasks_blocked()
        q.close()
    assert ended == ["ended"]
    with pytest.raises(trio.ClosedResourceError):
        q.put(job(1))
    with pytest.raises(trio.EndOfChannel):
        await q.take()


async def test_jobs_queued_before_close_can_still_be_taken() -> None:
    q = JobQueue()
    q.put(job(1))
    q.close()
    assert (await q.take()).order == 1  # the runtime answers these as it stops
    assert q.take_nowait() is None
    with pytest.raises(trio.EndOfChannel):
        await q.take()


# -- the invariant, for any interleaving ----------------------------------------------------

_STEP = st.one_of(
    st.just(("put",)),
    st.just(("wait",)),
    st.tuples(st.just("leave"), st.integers(0, 20)),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(_STEP, max_size=40))
def test_every_job_reaches_exactly_one_worker_in_order(steps: list[tuple[Any, ...]]) -> None:
    """Puts, Workers starting to wait and waiting Workers leaving, in any order: every
    job is taken exactly once or is still queued; jobs are taken in the order they were
    put; Workers are served in the order they began to wait; a Worker that left takes
    nothing; the statistics say what is queued and who waits."""

    async def main() -> None:
        q = JobQueue()
        taken: list[tuple[int, int]] = []  # (worker, job), in the order taken
        waiting: list[tuple[int, trio.CancelScope]] = []  # model: who waits, oldest first
        puts = 0
        workers = 0

        async def worker(number: int, scope: trio.CancelScope) -> None:
            with scope:
                got = await q.take()
                taken.append((number, got.order))

        async with trio.open_nursery() as nursery:
            for step in steps:
                if step[0] == "put":
                    q.put(job(puts))
                    puts += 1
                    if waiting:
                        waiting.pop(0)
                elif step[0] == "wait":
                    scope = trio.CancelScope()
                    if q.statistics().current_buffer_used == 0:
                        waiting.append((workers, scope))
                    nursery.start_soon(worker, workers, scope)
                    workers += 1
                elif waiting:
                    _, scope = waiting.pop(step[1] % len(waiting))
                    scope.cancel()
                await trio.testing.wait_all_tasks_blocked()
                assert q.statistics().tasks_waiting_receive == len(waiting)
            queued = q.statistics().current_buffer_used
            for _, scope in waiting:
                scope.cancel()
        # jobs: taken in order, none twice, the rest still queued
        orders = [order for _, order in taken]
        assert orders == list(range(len(orders)))
        assert len(orders) + queued == puts
        # Workers: served in the order they began to wait
        numbers = [number for number, _ in taken]
        assert numbers == sorted(numbers)

    trio.run(main)
