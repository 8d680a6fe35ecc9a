"""Admission: an endpoint's Workers take jobs while it is open, one (the probe's) when
its Pacer admits one, none while it is held."""

from __future__ import annotations

import trio
import trio.testing

from minimallm.actors.admission import Admission


def test_states_and_tickets() -> None:
    a = Admission()
    assert a.state == "open" and a.try_take() and a.try_take()
    a.close()
    assert a.state == "closed" and not a.try_take()
    a.admit_one()
    a.admit_one()  # idempotent until taken
    assert a.state == "probe" and a.try_take() and not a.try_take()
    assert a.state == "closed"
    a.open()
    assert a.is_open and a.statistics().tasks_waiting_receive == 0


async def test_waiters_wake_when_it_opens_or_admits_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a = Admission()
    a.close()
    woke: list[float] = []

    async def worker() -> None:
        await a.wait()
        woke.append(trio.current_time())

    async with trio.open_nursery() as nursery:
        nursery.start_soon(worker)
        await trio.sleep(1.0)
        assert woke == []
        a.admit_one()
        await trio.sleep(1.0)
        assert woke == [1.0]
        nursery.start_soon(worker)
        await trio.sleep(1.0)
        assert woke == [1.0, 2.0]  # the ticket is still out: not taken by try_take yet
        assert a.try_take()
        nursery.start_soon(worker)
        await trio.sleep(1.0)
        assert len(woke) == 2
        a.open()
    assert woke == [1.0, 2.0, 4.0]


def test_a_fleet_knows_whether_another_endpoint_is_up() -> None:
    fleet: list[Admission] = []
    a, b, c = Admission(fleet), Admission(fleet), Admission(fleet)
    assert a.endpoints == 3 and all(x.others_up() for x in fleet)
    b.outage = True  # its Pacer holds it for an outage
    b.close()
    assert a.others_up() and b.others_up()
    c.outage = True
    assert not a.others_up() and b.others_up()  # b's other, a, is up
    a.close()  # a pause (429s), not an outage: still up
    assert b.others_up() and c.others_up()
    b.open()
    assert not b.outage and a.others_up()
    alone = Admission()
    assert alone.endpoints == 1 and not alone.others_up()
