"""A Worker's report fan-out (actors/reports.py): the Limiter gets every report, the
Pacer only rate headers, the Cooldown overloads and probes, the request every one but
a success's."""

from __future__ import annotations

from typing import Any

import trio

from fakes import drain
from minimallm._policy.ratelimit import RateLimitInfo
from minimallm.actors.flags import Revoking, SendGate
from minimallm.actors.jobs import JobQueue
from minimallm.actors.messages import AttemptReport
from minimallm.actors.reports import deliver
from minimallm.actors.watchdog import Watches
from minimallm.actors.worker import WorkerChannels


def _channels(**inboxes: trio.MemorySendChannel[Any]) -> WorkerChannels:
    """A Worker's channels with the given inboxes (limiter, pacer, cooldown); the others
    unused."""
    unused = trio.open_memory_channel[Any](1)
    taken = {name: inboxes.get(name, unused[0]) for name in ("limiter", "pacer", "cooldown")}
    return WorkerChannels(
        jobs=JobQueue(),
        permits=unused[1],
        revocations=unused[1],
        gate=SendGate(),
        watchdog=unused[0],
        watches=Watches(1),
        revoking=Revoking(),
        **taken,
    )


async def test_each_actor_gets_the_reports_it_learns_from() -> None:
    pairs = {name: trio.open_memory_channel[Any](16) for name in ("limiter", "pacer", "cd")}
    events_in, events_out = trio.open_memory_channel[Any](16)
    ch = _channels(limiter=pairs["limiter"][0], pacer=pairs["pacer"][0], cooldown=pairs["cd"][0])
    ok = AttemptReport(0.0, 0.1, "ok", kept=True)
    headed = AttemptReport(0.0, 0.1, "ok", rate=RateLimitInfo(limit_requests=10), kept=True)
    refused = AttemptReport(0.0, 0.1, "overload", kept=True)
    for report in (ok, headed, refused):
        assert deliver(ch, report, events_in)
    assert drain(pairs["limiter"][1]) == [ok, headed, refused]
    assert drain(pairs["pacer"][1]) == [headed]
    assert drain(pairs["cd"][1]) == [refused]
    assert drain(events_out) == [refused]  # a success comes with its item instead


async def test_a_full_inbox_loses_a_sample_but_never_blocks() -> None:
    limiter = trio.open_memory_channel[Any](16)
    pacer = trio.open_memory_channel[Any](0)  # nobody receiving: full at once
    ch = _channels(limiter=limiter[0], pacer=pacer[0])
    headed = AttemptReport(0.0, 0.1, "ok", rate=RateLimitInfo(limit_requests=10), kept=True)
    assert deliver(ch, headed, None)
    assert drain(limiter[1]) == [headed]


async def test_a_full_limiter_inbox_is_told_and_the_others_still_get_theirs() -> None:
    limiter = trio.open_memory_channel[Any](1)
    cooldown = trio.open_memory_channel[Any](4)
    ch = _channels(limiter=limiter[0], cooldown=cooldown[0])
    first = AttemptReport(0.0, 0.1, "ok", kept=True)
    refused = AttemptReport(0.0, 0.2, "overload", kept=True)
    assert deliver(ch, first, None)
    assert not deliver(ch, refused, None)  # the Limiter is behind: the Worker waits
    assert drain(limiter[1]) == [first]
    assert drain(cooldown[1]) == [refused]
