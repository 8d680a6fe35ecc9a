"""When everyone pauses (PauseControl): sustained overload, probes, outages."""

from __future__ import annotations

import pytest

from minimallm._policy import CooldownState, PauseControl, PauseDecision


def control(**kw: object) -> PauseControl:
    cooldown = CooldownState(floor_s=0.0, cap_s=30.0, halflife_s=20.0, initial_s=0.5)
    return PauseControl(cooldown, **kw)  # type: ignore[arg-type]


def test_overload_answers_alone_never_pause_anybody() -> None:
    pc = control()
    for i in range(1000):
        assert pc.on_attempt(i * 0.01, "overload", retry_after_s=1.0) is None
    assert pc.on_congestion(10.0, 0) is None  # steps above the floor: the concurrency's business
    assert pc.on_congestion(10.5, 1) is None  # the first at the floor: the rate's
    assert pc.pauses == 0 and pc.holding is None


def test_the_second_step_at_the_floor_pauses_for_the_latest_retry_after() -> None:
    pc = control()
    pc.on_attempt(1.0, "overload", retry_after_s=5.0)
    pc.on_attempt(1.9, "overload", retry_after_s=2.0)
    assert pc.on_congestion(2.0, 2) == PauseDecision(True, 4.0, "cooldown")
    assert pc.holding == "cooldown" and pc.pauses == 1
    # answers to attempts that were out before the pause change nothing
    assert pc.on_attempt(2.1, "overload", retry_after_s=9.0) is None
    assert pc.on_congestion(2.2, 3) is None
    assert pc.on_attempt(2.3, "ok") is None


def test_without_retry_after_the_pause_is_the_cooldown_level() -> None:
    pc = control()
    pc.on_attempt(1.0, "overload")
    assert pc.on_congestion(2.0, 2) == PauseDecision(True, 2.5, "cooldown")


def test_a_server_saying_its_quota_is_exhausted_pauses_at_once() -> None:
    pc = control()
    decision = pc.on_attempt(5.0, "overload", retry_after_s=0.2, exhausted=True)
    assert decision == PauseDecision(True, 5.2, "cooldown")


def test_the_probe_decides() -> None:
    pc = control()
    pc.on_attempt(5.0, "overload", exhausted=True)  # no Retry-After: the level, 0.5 s
    assert pc.cooldown.deadline() == 5.5
    refused = pc.on_attempt(5.6, "overload", probe=True)
    assert refused is not None and refused.hold and refused.reason == "cooldown"
    assert refused.until == pytest.approx(5.6 + 2 * 0.5 * 0.5 ** (0.6 / 20))  # persisted: x2
    assert pc.on_attempt(6.7, "ok", probe=True) == PauseDecision(False)
    assert pc.holding is None
    pc.on_attempt(10.0, "overload", exhausted=True)
    assert pc.on_attempt(11.0, "failed", probe=True) == PauseDecision(False)  # any answer
    pc.on_attempt(12.0, "overload", exhausted=True)
    assert pc.on_attempt(13.0, "unreachable", probe=True) == PauseDecision(True, 13.5, "cooldown")


def test_an_outage_holds_and_probes_with_growing_intervals_until_an_answer() -> None:
    pc = control(probe_s=0.5, max_probe_s=2.0)
    assert pc.on_reach(1.03, False) == PauseDecision(True, 1.53, "outage")
    assert pc.holding == "outage" and pc.outage_since == 1.03
    assert pc.on_attempt(1.1, "timeout") is None  # not the probe
    assert pc.on_attempt(1.6, "unreachable", probe=True) == PauseDecision(True, 2.6, "outage")
    assert pc.on_attempt(2.7, "timeout", probe=True) == PauseDecision(True, 4.7, "outage")
    assert pc.on_attempt(4.8, "unreachable", probe=True) == PauseDecision(True, 6.8, "outage")
    assert pc.on_attempt(6.9, "overload", probe=True) == PauseDecision(False)  # it answered
    assert pc.on_reach(7.0, False) is not None  # a new outage
    assert pc.on_reach(7.5, True) == PauseDecision(False)


def test_an_outage_longer_than_its_budget_is_given_up() -> None:
    pc = control(outage_budget_s=10.0)
    pc.on_reach(1.0, False)
    assert pc.holding == "outage"
    assert pc.wake_at() == pytest.approx(11.0)
    assert pc.tick(11.0) == PauseDecision(False)
    assert pc.holding is None


def test_an_outage_is_not_given_up_while_another_endpoint_is_up() -> None:
    pc = control(outage_budget_s=10.0, probe_timeout_s=60.0)
    pc.on_reach(1.0, False)
    assert pc.tick(11.0, others_up=True) is None
    assert pc.holding == "outage"
    assert pc.wake_at() == pytest.approx(0.5 + 1.0 + 60.0)  # the probe's timeout, not the budget
    # its probes go on; looked at again with each probe's outcome
    assert pc.on_attempt(12.0, "unreachable", probe=True) == PauseDecision(True, 13.0, "outage")
    assert pc.tick(12.0, others_up=True) is None
    assert pc.tick(13.5, others_up=False) == PauseDecision(False)  # all down: given up
    assert pc.holding is None
    pc.on_reach(20.0, False)  # a new outage, a new budget
    assert pc.wake_at() == pytest.approx(30.0)


def test_an_outage_given_up_while_all_were_down_is_held_again_once_another_is_up() -> None:
    pc = control(outage_budget_s=10.0)
    pc.on_reach(1.0, False)
    assert pc.tick(11.0, others_up=False) == PauseDecision(False)  # all down: given up
    # no server still; nobody else up: it stays released (requests fail the ordinary way)
    assert pc.on_attempt(12.0, "unreachable") is None
    assert pc.on_attempt(13.0, "unreachable", others_up=True) == PauseDecision(True, 13.5, "outage")
    assert pc.holding == "outage" and pc.outage_since == 13.0  # a new budget from here
    # an endpoint that answered since it was given up is not held again for that
    pc.on_reach(14.0, True)
    assert pc.on_attempt(15.0, "unreachable", others_up=True) is None


def test_a_lost_probe_is_sent_again() -> None:
    pc = control(probe_timeout_s=5.0)
    pc.on_attempt(1.0, "overload", retry_after_s=1.0, exhausted=True)  # hold until 2.0
    assert pc.wake_at() == 7.0
    assert pc.tick(6.9) is None
    assert pc.tick(7.0) == PauseDecision(True, 7.0, "cooldown")
