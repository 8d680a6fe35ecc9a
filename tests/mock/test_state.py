"""The mock's counters (``minimallm.mock.state``) seen from another thread."""

from __future__ import annotations

import threading

import pytest

from minimallm.mock import MockServerConfig, MockStats
from minimallm.mock.faults import NO_DIRECTIVES
from minimallm.mock.state import MockState


def _admit(state: MockState) -> None:
    state.admit(
        now=1.0,
        method="POST",
        path="/v1/chat/completions",
        headers={},
        body={"messages": [{"content": "q"}]},
        wire_bytes=10,
        conn_id=1,
        fixed_kind=None,
        content="q",
        directives=NO_DIRECTIVES,
    )


@pytest.mark.realtime
def test_a_thread_waiting_for_a_count_wakes_when_it_is_reached() -> None:
    """Counting skips the notification while nobody waits: a waiter must still be told
    (untold, it would sleep out its 60 s)."""
    state = MockState(MockServerConfig())
    entered = threading.Event()
    seen: list[bool] = []

    def reached(stats: MockStats) -> bool:
        entered.set()  # called inside wait_for, holding the lock: the waiter is counted
        return stats.requests_total >= 3

    def wait() -> None:
        seen.append(state.wait_for(reached, timeout_s=60.0))

    waiter = threading.Thread(target=wait)
    waiter.start()
    entered.wait()
    for _ in range(3):
        _admit(state)
        state.finished()
    waiter.join(timeout=30.0)
    assert not waiter.is_alive(), "the waiter was not woken"
    assert seen == [True]
    assert state.snapshot().in_flight == 0


def test_waiting_for_what_already_holds_returns_at_once_and_a_timeout_says_false() -> None:
    state = MockState(MockServerConfig())
    assert state.wait_for(lambda s: s.requests_total == 0, timeout_s=0.0)
    assert not state.wait_for(lambda s: s.requests_total == 1, timeout_s=0.0)
