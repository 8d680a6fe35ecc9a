"""When everyone pauses (PauseControl): sustained overload, probes, outages."""

from __future__ import annotations

import random

import pytest

from minimallm._policy import CooldownState, PauseControl, PauseDecision


def control(**kw: object) -> PauseControl:
    cooldown = CooldownState(floor_s=0.0, cap_s=30.0, halflife_s=20.0, initial_s=0.5)
    return PauseControl(cooldown, **kw)  # type: ignore[arg-type]


def test_sporadic_overloads_never_pause_anybody() -> None:
    pc = control()
    rng = random.Random(3)
    t = 0.0
    for _ in range(50_000):
        t += 0.002
        kind = "overload" if rng.random() < 0.05 else "ok"
        assert pc.on_attempt(t, t - 0.1, kind, retry_after_s=1.0) is None
    assert pc.pauses == 0 and pc.holding is None


def test_overload_persisting_through_two_reactions_pauses_for_the_retry_after() -> None:
    pc = control()
    for _ in range(8):  # step 1 at t=1 (the concurrency limit reacts)
        assert pc.on_attempt(1.0, 0.5, "overload", retry_after_s=2.0) is None
    assert pc.on_attempt(1.5, 1.1, "overload", retry_after_s=2.0) is None  # step 2 (the rate)
    decision = pc.on_attempt(2.0, 1.6, "overload", retry_after_s=2.0)  # step 3
    assert decision == PauseDecision(True, 4.0, "cooldown")
    assert pc.holding == "cooldown" and pc.pauses == 1
    # answers to attempts that were out before the pause change nothing
    assert pc.on_attempt(2.1, 1.9, "overload", retry_after_s=2.0) is None
    assert pc.on_attempt(2.1, 1.9, "ok") is None


def test_a_server_saying_its_quota_is_exhausted_pauses_at_once() -> None:
    pc = control()
    decision = pc.on_attempt(5.0, 4.9, "overload", retry_after_s=0.2, exhausted=True)
    assert decision == PauseDecision(True, 5.2, "cooldown")


def test_the_probe_decides() -> None:
    pc = control()
    pc.on_attempt(5.0, 4.9, "overload", exhausted=True)  # no Retry-After: the level, 0.5 s
    assert pc.cooldown.deadline() == 5.5
    refused = pc.on_attempt(5.6, 5.5, "overload", probe=True)
    assert refused is not None and refused.hold and refused.reason == "cooldown"
    assert refused.until == pytest.approx(5.6 + 2 * 0.5 * 0.5 ** (0.6 / 20))  # persisted: x2
    assert pc.on_attempt(6.7, 6.6, "ok", probe=True) == PauseDecision(False)
    assert pc.holding is None
    # a probe that answers anything but overload also releases
    pc.on_attempt(10.0, 9.9, "overload", exhausted=True)
    assert pc.on_attempt(11.0, 10.9, "failed", probe=True) == PauseDecision(False)


def test_an_outage_holds_and_probes_with_growing_intervals_until_an_answer() -> None:
    pc = control(probe_s=0.5, max_probe_s=2.0)
    assert pc.on_attempt(0.0, -0.1, "ok") is None
    for i in range(3):
        assert pc.on_attempt(1.0 + i * 0.01, 0.9, "unreachable") is None
    declared = pc.on_attempt(1.03, 0.9, "unreachable")
    assert declared == PauseDecision(True, 1.53, "outage")
    assert pc.holding == "outage" and pc.outage_since == 1.03
    assert pc.on_attempt(1.1, 0.95, "timeout") is None  # not the probe
    assert pc.on_attempt(1.6, 1.53, "unreachable", probe=True) == PauseDecision(True, 2.6, "outage")
    assert pc.on_attempt(2.7, 2.6, "timeout", probe=True) == PauseDecision(True, 4.7, "outage")
    assert pc.on_attempt(4.8, 4.7, "unreachable", probe=True) == PauseDecision(True, 6.8, "outage")
    assert pc.on_attempt(6.9, 6.8, "overload", probe=True) == PauseDecision(False)  # it answered


def test_no_outage_for_a_server_that_never_answered() -> None:
    pc = control()
    for i in range(20):
        assert pc.on_attempt(float(i), i - 0.1, "unreachable") is None
    assert pc.holding is None


def test_an_outage_longer_than_its_budget_is_given_up() -> None:
    pc = control(outage_budget_s=10.0)
    pc.on_attempt(0.0, -0.1, "ok")
    for _ in range(4):
        pc.on_attempt(1.0, 0.9, "unreachable")
    assert pc.holding == "outage"
    assert pc.wake_at() == pytest.approx(11.0)
    assert pc.tick(11.0) == PauseDecision(False)
    for _ in range(10):  # and not declared again until the server answers
        assert pc.on_attempt(12.0, 11.9, "unreachable") is None


def test_a_lost_probe_is_sent_again() -> None:
    pc = control(probe_timeout_s=5.0)
    pc.on_attempt(1.0, 0.9, "overload", retry_after_s=1.0, exhausted=True)  # hold until 2.0
    assert pc.wake_at() == 7.0
    assert pc.tick(6.9) is None
    assert pc.tick(7.0) == PauseDecision(True, 7.0, "cooldown")
