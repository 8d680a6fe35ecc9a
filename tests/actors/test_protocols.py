"""Each actor's protocol on its own: messages in, messages out, at exact virtual times.
And nothing of an actor's state is reachable except through its channels and its
``statistics()`` snapshot."""

from __future__ import annotations

import math
from typing import Any

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script, drain
from minimallm._policy import (
    ConcurrencyControl,
    CooldownState,
    PacingSchedule,
    PauseControl,
    RateControl,
    RateLimitInfo,
)
from minimallm._policy.flow import CongestionEvent, ReachEvent
from minimallm._runtime.serve import Runtime, RuntimeStatistics
from minimallm.actors import CacheWriter, Cooldown, Limiter, Monitor, Pacer, Watchdog, Worker
from minimallm.actors.flags import Revoking, SendGate
from minimallm.actors.jobs import JobQueue
from minimallm.actors.messages import (
    PERMIT,
    REVOKE,
    AttemptReport,
    AttemptStarted,
    Hold,
    Job,
    Release,
    Reply,
    Slot,
    WantSlot,
)
from minimallm.actors.report_inbox import ReportInbox
from minimallm.actors.watchdog import Watches
from minimallm.actors.worker import WorkerChannels


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def report(sent: float, done: float, kind: str = "ok", **kw: Any) -> AttemptReport:
    return AttemptReport(sent, done, kind, **kw)  # type: ignore[arg-type]


# -- Limiter ----------------------------------------------------------------------------


async def test_limiter_mints_permits_revokes_on_a_step_and_tells_the_others(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_in = inbox = ReportInbox(100)
    permits = trio.open_memory_channel[object](8)
    revocations = trio.open_memory_channel[object](8)
    _, jobs = trio.open_memory_channel[Any](0)
    told_in, told = trio.open_memory_channel[Any](100)
    revoking = Revoking()
    limiter = Limiter(
        ConcurrencyControl(8), inbox, permits, revocations, jobs, (told_in,), revoking=revoking
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(limiter.run)
        assert drain(permits[1]) == [PERMIT] * 8  # the cap, at once
        assert not revoking.pending  # Workers need not look for a revocation
        # the permits are "held" now (taken); 8 overloads in a row: a step at t=1
        for _ in range(8):
            inbox_in.send_nowait(report(0.5, 1.0, "overload", kept=True))
        await trio.sleep(1.0)
        assert limiter.statistics().frozen
        assert drain(revocations[1]) == [REVOKE] * 8  # frozen: every held permit back
        assert revoking.pending  # shown to the Workers until the permits come back
        [step] = drain(told)
        assert step == CongestionEvent(1.0, 1, 0, 0.0, 0.0, None, limit_before=8)
        # 8 permits come back (revoked); then the first success decides: 1 survived
        for _ in range(8):
            inbox_in.send_nowait(AttemptReport(0.6, 1.2, "overload", kept=False))
        inbox_in.send_nowait(report(1.0, 1.3, "ok", kept=False))
        await trio.testing.wait_all_tasks_blocked()
        stats = limiter.statistics()
        assert (stats.limit, stats.frozen, stats.decreases) == (1, False, 1)
        assert not revoking.pending  # every revocation answered
        nursery.cancel_scope.cancel()


async def test_limiter_decides_at_the_deadline_without_a_success(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_in = inbox = ReportInbox(100)
    permits = trio.open_memory_channel[object](4)
    revocations = trio.open_memory_channel[object](4)
    _, jobs = trio.open_memory_channel[Any](0)
    limiter = Limiter(ConcurrencyControl(4), inbox, permits, revocations, jobs)
    async with trio.open_nursery() as nursery:
        await nursery.start(limiter.run)
        drain(permits[1])  # four Workers hold the four permits
        await trio.sleep(2.0)
        for _ in range(8):  # a step at t=2 (the 4 attempts and 4 more, all refused)
            inbox_in.send_nowait(report(1.9, 2.0, "overload", kept=True))
        await trio.sleep(0.5)
        assert limiter.statistics().frozen
        assert drain(revocations[1]) == [REVOKE] * 4
        for _ in range(4):  # the four permits come back with the next answers
            inbox_in.send_nowait(report(2.4, 2.5, "overload", kept=False))
        await trio.sleep(0.4999)  # no latency known yet: the decision comes at 2.0 + 1.0
        assert limiter.statistics().frozen
        await trio.sleep(0.0002)
        stats = limiter.statistics()
        assert (stats.frozen, stats.limit, stats.decreases) == (False, 1, 1)  # nothing out
        assert drain(permits[1]) == [PERMIT]
        nursery.cancel_scope.cancel()


# -- Pacer --------------------------------------------------------------------------------


async def test_pacer_without_rpm_opens_the_gate(
    autojump_clock: trio.testing.MockClock,
) -> None:
    _, inbox = trio.open_memory_channel[Any](10)
    gate = SendGate()
    pacer = Pacer(PacingSchedule(0), RateControl(), inbox, gate)
    assert not gate.open  # shut until the Pacer runs
    async with trio.open_nursery() as nursery:
        await nursery.start(pacer.run)
        assert gate.open
        assert pacer.statistics().mode == "open"
        nursery.cancel_scope.cancel()


async def test_pacer_grants_slots_on_the_rpm_schedule(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_in, inbox = trio.open_memory_channel[Any](10)
    gate = SendGate()
    pacer = Pacer(PacingSchedule(60), RateControl(), inbox, gate)
    grants: list[tuple[float, Slot]] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(pacer.run)
        assert not gate.open  # paced: every send asks for a slot
        channels = [trio.open_memory_channel[Slot](1) for _ in range(3)]
        for seq, (grant_in, _) in enumerate(channels):
            inbox_in.send_nowait(WantSlot(seq, grant_in))

        async def wait(i: int) -> None:
            slot = await channels[i][1].receive()
            grants.append((trio.current_time(), slot))

        for i in range(3):
            nursery.start_soon(wait, i)
        await trio.sleep(5)
        assert grants == [(0.0, Slot(0)), (1.0, Slot(1)), (2.0, Slot(2))]
        nursery.cancel_scope.cancel()


async def test_pacer_grants_the_oldest_request_first_whatever_order_workers_ask_in(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # trio may run a wave of woken Workers in reverse: their requests 2, 1, 0 ask first
    inbox_in, inbox = trio.open_memory_channel[Any](10)
    gate = SendGate()
    pacer = Pacer(PacingSchedule(60), RateControl(), inbox, gate)
    async with trio.open_nursery() as nursery:
        await nursery.start(pacer.run)
        channels = [trio.open_memory_channel[Slot](1) for _ in range(3)]
        for order in (2, 1, 0):
            inbox_in.send_nowait(WantSlot(10 + order, channels[order][0], order))
        granted = []
        for t in (0.0, 1.0, 2.0):
            await trio.sleep_until(t + 0.5)
            granted += [i for i, (_, out) in enumerate(channels) if drain(out)]
        assert granted == [0, 1, 2]  # one a second, the oldest request first
        nursery.cancel_scope.cancel()


async def test_pacer_holds_then_lets_exactly_one_probe_go_then_releases(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_in, inbox = trio.open_memory_channel[Any](10)
    gate = SendGate()
    pacer = Pacer(PacingSchedule(0), RateControl(), inbox, gate)
    async with trio.open_nursery() as nursery:
        await nursery.start(pacer.run)
        assert gate.open
        inbox_in.send_nowait(Hold(until=3.0, probe=True, reason="cooldown"))
        await trio.sleep(0.5)
        assert not gate.open and pacer.statistics().mode == "held"
        grants = [trio.open_memory_channel[Slot](1) for _ in range(2)]
        for seq, (grant_in, _) in enumerate(grants):
            inbox_in.send_nowait(WantSlot(seq, grant_in))
        await trio.sleep(2.4999)
        assert drain(grants[0][1]) == []
        await trio.sleep(0.0002)
        assert drain(grants[0][1]) == [Slot(0, "cooldown")]  # the probe, at 3.0
        await trio.sleep(10)
        assert drain(grants[1][1]) == []  # nothing more until the Cooldown's word
        inbox_in.send_nowait(Release())
        await trio.testing.wait_all_tasks_blocked()
        assert drain(grants[1][1]) == [Slot(1)]
        assert gate.open  # open again
        nursery.cancel_scope.cancel()


async def test_pacer_paces_at_the_rate_the_servers_headers_give(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_in, inbox = trio.open_memory_channel[Any](10)
    gate = SendGate()
    pacer = Pacer(PacingSchedule(0), RateControl(), inbox, gate)
    half_full = RateLimitInfo(limit_requests=20, remaining_requests=10, reset_requests_s=2.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(pacer.run)
        inbox_in.send_nowait(report(0.0, 0.1, rate=half_full))  # 10 used, full in 2.5 s: 4/s
        await trio.testing.wait_all_tasks_blocked()
        stats = pacer.statistics()
        assert (stats.mode, stats.rate_source) == ("paced", "headers")
        assert stats.rate_per_s == pytest.approx(4.0)
        nursery.cancel_scope.cancel()


# -- Cooldown -------------------------------------------------------------------------------


async def test_cooldown_holds_on_an_exhausted_quota_and_releases_on_the_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_in, inbox = trio.open_memory_channel[Any](10)
    to_pacer, pacer = trio.open_memory_channel[Any](10)
    state = CooldownState(floor_s=0.0, cap_s=30.0, halflife_s=20.0, initial_s=0.5)
    cooldown = Cooldown(PauseControl(state, probe_timeout_s=5.0), inbox, to_pacer)
    exhausted = RateLimitInfo(remaining_requests=0)
    async with trio.open_nursery() as nursery:
        await nursery.start(cooldown.run)
        await trio.sleep(1.0)
        inbox_in.send_nowait(report(0.9, 1.0, "overload", retry_after_s=2.0, rate=exhausted))
        await trio.testing.wait_all_tasks_blocked()
        assert drain(pacer) == [Hold(3.0, True, "cooldown")]
        inbox_in.send_nowait(report(3.0, 3.2, "ok", probe="cooldown"))
        await trio.testing.wait_all_tasks_blocked()
        assert drain(pacer) == [Release()]
        nursery.cancel_scope.cancel()


async def test_cooldown_probes_an_outage_and_reissues_a_lost_probe(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_in, inbox = trio.open_memory_channel[Any](10)
    to_pacer, pacer = trio.open_memory_channel[Any](10)
    state = CooldownState(floor_s=0.0, cap_s=30.0, halflife_s=20.0, initial_s=0.5)
    control = PauseControl(state, probe_s=0.5, probe_timeout_s=5.0)
    cooldown = Cooldown(control, inbox, to_pacer)
    async with trio.open_nursery() as nursery:
        await nursery.start(cooldown.run)
        await trio.sleep(2.0)
        inbox_in.send_nowait(ReachEvent(2.0, False))  # the Limiter: no server any more
        await trio.testing.wait_all_tasks_blocked()
        assert drain(pacer) == [Hold(2.5, True, "outage")]
        await trio.sleep(5.4999)  # the probe never reports: re-issued 5 s after 2.5
        assert drain(pacer) == []
        await trio.sleep(0.0002)
        assert drain(pacer) == [Hold(7.5, True, "outage")]
        inbox_in.send_nowait(ReachEvent(8.0, True))
        await trio.testing.wait_all_tasks_blocked()
        assert drain(pacer) == [Release()]
        nursery.cancel_scope.cancel()


# -- Watchdog -------------------------------------------------------------------------------


async def test_watchdog_ends_an_attempt_exactly_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbox_in, inbox = trio.open_memory_channel[AttemptStarted](10)
    watches = Watches(3)
    expired: list[tuple[int, int, float]] = []

    def handle(worker: int) -> Any:
        return lambda seq: expired.append((worker, seq, trio.current_time()))

    def start(worker: int, seq: int, deadline: float) -> None:
        """What a Worker does as it sends an attempt."""
        watches.seqs[worker], watches.deadlines[worker] = seq, deadline
        if watches.idle:
            inbox_in.send_nowait(AttemptStarted(deadline, worker, seq))

    watchdog = Watchdog(inbox, watches, [handle(0), handle(1), handle(2)])
    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog.run)
        await trio.testing.wait_all_tasks_blocked()
        assert watches.idle  # nothing in flight: it waits to be told
        start(0, 1, 5.5)
        await trio.sleep(2.0)
        assert not watches.idle
        start(1, 1, 7.25)
        start(2, 4, 6.0)
        await trio.sleep(1.0)
        watches.deadlines[2] = math.inf  # attempt 4 of Worker 2 ended in time
        await trio.sleep(10)
        assert expired == [(0, 1, 5.5), (1, 1, 7.25)]
        assert watches.deadlines == [math.inf] * 3 and watches.idle
        assert watchdog.statistics() == (0, 2)
        start(2, 5, 20.0)  # the next attempt, told to the idle Watchdog
        await trio.sleep(10)
        assert expired[-1] == (2, 5, 20.0)
        nursery.cancel_scope.cancel()


async def test_watchdog_wakes_at_least_every_tick_while_an_attempt_is_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # a virtual clock jumps to the next deadline whenever every task waits (on a thread,
    # say): a far TIMEOUT_S must be reached in ticks, not in one jump
    inbox_in, inbox = trio.open_memory_channel[AttemptStarted](10)
    watches = Watches(1)
    watchdog = Watchdog(inbox, watches, [lambda seq: None], tick_s=0.5)
    async with trio.open_nursery() as nursery:
        await nursery.start(watchdog.run)
        await trio.testing.wait_all_tasks_blocked()
        watches.seqs[0], watches.deadlines[0] = 1, 1e9
        inbox_in.send_nowait(AttemptStarted(1e9, 0, 1))  # the idle Watchdog is told
        await trio.testing.wait_all_tasks_blocked()
        assert trio.lowlevel.current_statistics().seconds_to_next_deadline == 0.5
        nursery.cancel_scope.cancel()


# -- Worker ---------------------------------------------------------------------------------


def worker_for(server: FakeServer, timeout_s: float = 60.0) -> tuple[Worker, dict[str, Any]]:
    ch = {
        "jobs": JobQueue(),
        "permits": trio.open_memory_channel[object](1),
        "revocations": trio.open_memory_channel[object](1),
        "limiter": trio.open_memory_channel[Any](10),
        "pacer": trio.open_memory_channel[Any](10),
        "cooldown": trio.open_memory_channel[Any](10),
        "watchdog": trio.open_memory_channel[AttemptStarted](10),
        "gate": SendGate(),
        "watches": Watches(1),
        "revoking": Revoking(),
    }
    channels = WorkerChannels(
        jobs=ch["jobs"],
        permits=ch["permits"][1],
        revocations=ch["revocations"][1],
        gate=ch["gate"],
        limiter=ch["limiter"][0],
        pacer=ch["pacer"][0],
        cooldown=ch["cooldown"][0],
        watchdog=ch["watchdog"][0],
        watches=ch["watches"],
        revoking=ch["revoking"],
    )
    orphans: list[Job] = []
    worker = Worker(
        0,
        server.transport("http://fake.invalid"),
        channels,
        headers=(),
        timeout_s=timeout_s,
        orphan=lambda job, exc: orphans.append(job),
    )
    return worker, ch


BODY = b'{"model":"m","messages":[{"role":"user","content":"p"}]}'


async def test_worker_permit_open_gate_attempt_report_reply(
    autojump_clock: trio.testing.MockClock,
) -> None:
    worker, ch = worker_for(FakeServer(lambda c, n: Script(latency=2.0)))
    watches = ch["watches"]
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        ch["permits"][0].send_nowait(PERMIT)
        ch["gate"].open = True
        reply: Reply[Any] = Reply()
        watches.idle = True  # an idle Watchdog is told of the attempt
        ch["jobs"].put(Job(BODY, reply))
        await trio.sleep(1.0)
        assert (watches.seqs, watches.deadlines) == ([1], [60.0])  # watched while out
        result, sent_at, done_at = await reply.receive()
        assert trio.current_time() == 2.0 and (sent_at, done_at) == (0.0, 2.0)
        assert result.text == "echo: p"
        assert watches.deadlines == [math.inf]  # ended: nothing to watch
        [started] = drain(ch["watchdog"][1])
        assert started == AttemptStarted(60.0, 0, 1)
        [done] = drain(ch["limiter"][1])
        assert (done.sent_at, done.done_at, done.kind, done.kept) == (0.0, 2.0, "ok", True)
        assert drain(ch["pacer"][1]) == []  # the open gate: the Pacer was not asked
        assert worker.statistics().permit  # kept for the next job
        # revoked: the next report gives the permit back
        ch["revocations"][0].send_nowait(REVOKE)
        ch["revoking"].pending = True  # as the Limiter shows it
        reply2: Reply[Any] = Reply()
        watches.idle = False  # a Watchdog that is awake reads the deadline itself
        ch["jobs"].put(Job(BODY, reply2))
        await reply2.receive()
        [done2] = drain(ch["limiter"][1])
        assert done2.kept is False and not worker.statistics().permit
        assert drain(ch["watchdog"][1]) == []
        nursery.cancel_scope.cancel()


async def test_worker_a_caller_who_leaves_ends_the_attempt_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=100.0))
    worker, ch = worker_for(server)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        ch["permits"][0].send_nowait(PERMIT)
        ch["gate"].open = True

        async def caller() -> None:
            with trio.move_on_after(3.0):
                reply: Reply[Any] = Reply()
                ch["jobs"].put(Job(BODY, reply))
                await reply.receive()

        await caller()
        await trio.testing.wait_all_tasks_blocked()
        assert server.sent[0].cancelled and server.sent[0].end == 3.0
        assert server.in_flight == 0 and drain(ch["limiter"][1]) == []  # no report
        assert worker.statistics().permit  # it keeps its permit
        nursery.cancel_scope.cancel()


async def test_worker_the_watchdogs_expiry_makes_a_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    worker, ch = worker_for(FakeServer(lambda c, n: Script(latency=100.0)), timeout_s=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(worker.run)
        ch["permits"][0].send_nowait(PERMIT)
        ch["gate"].open = True
        reply: Reply[Any] = Reply()
        ch["jobs"].put(Job(BODY, reply))
        await trio.sleep(5.0)
        worker.expire(1)  # what the Watchdog does at the deadline
        result, _, _ = await reply.receive()
        assert (result.error_type, result.status) == ("TimeoutError", 408)
        assert trio.current_time() == 5.0
        nursery.cancel_scope.cancel()


# -- Monitor --------------------------------------------------------------------------------


async def test_monitor_ticks_on_an_absolute_schedule_and_ends_with_done(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from minimallm import BatchConfig
    from minimallm._progress import ProgressTally

    shown: list[tuple[float, str, int]] = []

    class Sink:
        tick_s = 2.0

        def show(self, p: Any) -> None:
            shown.append((trio.current_time(), p.kind, p.done))

        def close(self) -> None:
            shown.append((trio.current_time(), "closed", -1))

    events_in, events = trio.open_memory_channel[Any](10)
    tally = ProgressTally(3, 0.0)  # the batch's record: its runners count items there
    monitor = Monitor(BatchConfig(stall_s=100.0), tally, events, Sink())
    async with trio.open_nursery() as nursery:
        await nursery.start(monitor.run)
        await trio.sleep(3.0)
        tally.item_finished(0.0, 3.0, "ok")
        await trio.sleep(2.5)
        tally.item_finished(0.0, 5.5, "ok")
        tally.item_finished(0.0, 5.5, "ok")
        await events_in.aclose()
    assert shown == [
        (2.0, "tick", 0),
        (4.0, "tick", 1),
        (5.5, "done", 3),
        (5.5, "closed", -1),
    ]
    assert monitor.statistics().done == 3


# -- encapsulation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actor", "public"),
    [
        (CacheWriter, {"run", "statistics"}),
        (Cooldown, {"run", "statistics"}),
        (Limiter, {"run", "statistics"}),
        (Monitor, {"run", "statistics"}),
        (Pacer, {"run", "statistics"}),
        (Watchdog, {"run", "statistics"}),
        # a Worker's two handles end the attempt they name, nothing else (see its doc);
        # attempt_here and let_go serve a batch item's door in the Worker's own task
        (Worker, {"run", "statistics", "interrupt", "expire", "attempt_here", "let_go"}),
    ],
)
def test_an_actor_shows_nothing_but_run_and_statistics(actor: type, public: set[str]) -> None:
    assert {name for name in dir(actor) if not name.startswith("_")} == public
    assert "__dict__" not in dir(actor)  # slotted: no attribute can be added from outside


def test_the_runtime_handle_is_frozen_and_shows_only_snapshots_and_stop() -> None:
    public = {name for name in dir(Runtime) if not name.startswith("_")}
    assert public == {
        # what the request door reads
        "cfg",
        "jobs",
        "cache",
        "rng",
        "retry",
        "secrets",
        "life",
        # the flow-control actors, for their statistics() only
        "limiter",
        "pacer",
        "cooldown",
        "endpoints",  # each endpoint's (several endpoints of one model)
        "tokens",  # the TPM gate (the request door reserves and settles there)
        # lifecycle and snapshots
        "running",
        "stop",
        "aclose",
        "flush",
        "statistics",
    }
    assert Runtime.__dataclass_params__.frozen  # type: ignore[attr-defined]
    assert "__dict__" not in dir(Runtime)


def test_statistics_are_frozen_snapshots() -> None:
    fields = dict.fromkeys(RuntimeStatistics._fields)
    stats = RuntimeStatistics(**fields)  # type: ignore[arg-type]
    with pytest.raises(AttributeError):  # a NamedTuple: cheaper to define than a dataclass
        stats.in_flight = 3  # type: ignore[misc]
