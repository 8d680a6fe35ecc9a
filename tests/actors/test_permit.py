"""Permit: a Worker's permit, taken before a job, kept between attempts, given back
when revoked or refused before any success."""

from __future__ import annotations

import trio
import trio.testing

from minimallm.actors.flags import Revoking
from minimallm.actors.messages import PERMIT, REVOKE
from minimallm.actors.permit import Permit


def _permit() -> tuple[
    Permit, trio.MemorySendChannel[object], trio.MemorySendChannel[object], Revoking
]:
    permits_in, permits_out = trio.open_memory_channel[object](8)
    revoke_in, revoke_out = trio.open_memory_channel[object](8)
    revoking = Revoking()
    return Permit(permits_out, revoke_out, revoking), permits_in, revoke_in, revoking


async def test_a_permit_is_taken_at_once_when_idle_and_waited_for_otherwise(
    autojump_clock: trio.testing.MockClock,
) -> None:
    permit, permits, _, _ = _permit()
    permits.send_nowait(PERMIT)
    await permit.take()
    assert permit.held
    permit.held = False
    with trio.move_on_after(1) as waited:
        await permit.take()
    assert waited.cancelled_caught and not permit.held


def test_a_newcomer_refused_gives_its_permit_back_and_one_that_got_through_keeps_it() -> None:
    permit, _, _, _ = _permit()
    permit.held = True
    assert permit.settle("overload") == (False, False)  # refused before any success
    assert not permit.held
    permit.held = True
    assert permit.settle("failed") == (True, False)  # a failure is not a refusal
    assert permit.settle("ok") == (True, False)
    assert permit.settle("overload") == (True, False)  # through once: it keeps it


def test_a_revoked_permit_goes_back_once_per_token() -> None:
    permit, _, revocations, revoking = _permit()
    permit.held = True
    assert permit.settle("ok") == (True, False)
    revocations.send_nowait(REVOKE)
    assert permit.settle("ok") == (True, False)  # not looked at: nothing pending
    revoking.pending = True
    assert permit.settle("ok") == (False, True)  # the token taken
    assert not permit.held
    permit.held = True
    assert permit.settle("ok") == (True, False)  # no token left
