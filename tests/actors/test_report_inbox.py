"""ReportInbox: the Limiter's inbox; calm reports wake it only in ``linger``s, any other
report at once, in order, bounded like the channel it replaces."""

from __future__ import annotations

import math

import pytest
import trio
import trio.testing

from minimallm.actors.messages import AttemptReport
from minimallm.actors.report_inbox import ReportInbox


def calm(at: float) -> AttemptReport:
    return AttemptReport(at - 0.1, at, "ok", kept=True)


def refused(at: float) -> AttemptReport:
    return AttemptReport(at - 0.1, at, "overload", kept=True)


async def done_at(inbox: ReportInbox, deadline: float = math.inf) -> list[float]:
    burst = await inbox.burst(deadline)
    assert burst is not None
    return [r.done_at for r in burst]


async def test_calm_reports_wake_the_limiter_once_linger_of_them_wait(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = ReportInbox(100)
    inbox.linger = 3
    woken: list[tuple[float, list[float]]] = []

    async def limiter() -> None:
        while (burst := await inbox.burst(math.inf)) is not None:
            woken.append((trio.current_time(), [r.done_at for r in burst]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(limiter)
        for i in range(1, 8):
            await trio.sleep(1.0)
            inbox.send_nowait(calm(float(i)))
        await trio.sleep(0.5)
        inbox.close()
    assert woken == [(3.0, [1.0, 2.0, 3.0]), (6.0, [4.0, 5.0, 6.0]), (7.5, [7.0])]


async def test_any_other_report_wakes_it_at_once_after_the_calm_ones_before_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = ReportInbox(100)
    inbox.linger = 8
    woken: list[tuple[float, list[str]]] = []

    async def limiter() -> None:
        while (burst := await inbox.burst(math.inf)) is not None:
            woken.append((trio.current_time(), [r.kind for r in burst]))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(limiter)
        await trio.sleep(1.0)
        inbox.send_nowait(calm(1.0))
        await trio.sleep(1.0)
        inbox.send_nowait(refused(2.0))
        await trio.sleep(1.0)
        inbox.send_nowait(AttemptReport(2.9, 3.0, "ok", kept=False))  # a permit back
        await trio.sleep(1.0)
        inbox.close()
    assert woken == [(2.0, ["ok", "overload"]), (3.0, ["ok"])]


async def test_its_own_deadline_takes_whatever_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = ReportInbox(100)
    inbox.linger = 8
    assert await inbox.burst(1.0) == []  # nothing by then
    inbox.send_nowait(calm(1.0))
    assert await done_at(inbox, 5.0) == [1.0]  # waiting: at once
    with trio.CancelScope() as scope:
        scope.deadline = 10.0

        async def later() -> None:
            await trio.sleep(2.0)
            inbox.send_nowait(calm(7.0))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(later)
            got = await inbox.burst(9.0)  # one calm report: it lingers until 9
            assert trio.current_time() == 9.0
            assert [r.done_at for r in got or []] == [7.0]


async def test_full_it_refuses_without_waiting_and_send_waits_for_room(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox = ReportInbox(2)
    inbox.send_nowait(refused(1.0))
    inbox.send_nowait(refused(2.0))
    with pytest.raises(trio.WouldBlock):
        inbox.send_nowait(refused(3.0))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(inbox.send, refused(3.0))
        await trio.sleep(1.0)
        assert inbox.statistics() == (2, False)  # the sender waits
        assert await done_at(inbox) == [1.0, 2.0]
    assert await done_at(inbox) == [3.0]
    inbox.close()
    assert await inbox.burst(math.inf) is None
    with pytest.raises(trio.ClosedResourceError):
        inbox.send_nowait(refused(4.0))
