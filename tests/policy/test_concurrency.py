"""The adaptive concurrency limit (ConcurrencyControl), step by step."""

from __future__ import annotations

import math

import pytest

from minimallm._policy import ConcurrencyControl


def burst(cc: ConcurrencyControl, sent: int, refused: int, at: float = 0.001) -> None:
    """``sent`` attempts went out at t=0; the server refuses ``refused`` of them at once."""
    out = sent
    for _ in range(refused):
        out -= 1
        cc.on_answer(at, 0.0, True, out)


def test_starts_at_the_cap() -> None:
    cc = ConcurrencyControl(64)
    assert cc.limit == 64 and not cc.learned and not cc.frozen


def test_a_server_with_32_slots_is_found_in_one_step() -> None:
    cc = ConcurrencyControl(64)
    burst(cc, 64, 32)
    assert cc.frozen and cc.limit == 64  # no new attempts until the decision
    cc.on_answer(0.1, 0.0, False, 31)  # the first success: 31 others still out
    assert not cc.frozen
    assert cc.limit == 32 and cc.decreases == 1 and cc.learned


def test_no_success_by_the_deadline_decides_on_what_is_out() -> None:
    cc = ConcurrencyControl(64)
    burst(cc, 64, 64)
    assert cc.frozen
    deadline = cc.wake_at()
    assert deadline == pytest.approx(0.001 + 1.0)  # no latency known yet: 2 x 0.5 s, at most 1 s
    cc.tick(deadline - 1e-6, 0)
    assert cc.frozen
    cc.tick(deadline, 0)
    assert not cc.frozen and cc.limit == 1


def test_slow_start_then_one_per_round_trip() -> None:
    cc = ConcurrencyControl(64)
    burst(cc, 64, 64)
    cc.tick(2.0, 0)  # limit 1, ssthresh 32
    t = 2.0
    limits = []
    while cc.limit < 32:
        t += 0.1
        cc.on_answer(t, t - 0.1, False, cc.limit - 1)  # the limit is what binds
        limits.append(cc.limit)
    assert limits == list(range(2, 33))  # one more per success below ssthresh
    # above ssthresh: 1/limit per success, i.e. one more per round trip's worth
    for _ in range(40):
        t += 0.1
        cc.on_answer(t, t - 0.1, False, cc.limit - 1)
    assert cc.limit == 33


def test_a_storm_lowers_the_limit_again_and_again_but_ssthresh_once() -> None:
    cc = ConcurrencyControl(64)
    burst(cc, 64, 64)
    cc.tick(2.0, 0)  # the storm's first step: limit 1, ssthresh 32
    t = 2.0
    for _ in range(10):  # the storm goes on: every probe at limit 1 refused
        t += 2.0
        cc.on_answer(t, t - 0.001, True, 0)
        cc.tick(t + 1.0, 0)
    assert cc.limit == 1
    limits = []
    while cc.limit < 32:  # the storm is over: slow start all the way back to 32
        t += 0.1
        cc.on_answer(t, t - 0.1, False, cc.limit - 1)
        limits.append(cc.limit)
    assert limits == list(range(2, 33))


def test_a_step_after_the_level_held_halves_ssthresh_again() -> None:
    cc = ConcurrencyControl(64)
    burst(cc, 64, 64)
    cc.tick(2.0, 0)  # limit 1, ssthresh 32
    t = 2.0
    while cc.limit < 20:
        t += 0.1
        cc.on_answer(t, t - 0.1, False, cc.limit - 1)
    for _ in range(20):  # 20 held a round trip and more
        t += 0.1
        cc.on_answer(t, t - 0.1, False, 10)
    for out in range(19, -1, -1):  # a new episode at 20: all refused
        cc.on_answer(t + 0.001, t, True, out)
    assert cc.frozen
    cc.tick(t + 2.0, 0)
    t += 2.0
    limits = []
    for _ in range(12):
        t += 0.1
        cc.on_answer(t, t - 0.1, False, cc.limit - 1)
        limits.append(cc.limit)
    assert limits[:10] == [*range(2, 11), 10]  # slow start up to 20 / 2, no further


def test_no_growth_while_the_client_sends_less_than_the_limit() -> None:
    cc = ConcurrencyControl(64)
    burst(cc, 64, 64)
    cc.tick(2.0, 0)
    cc.on_answer(2.5, 2.4, False, 0)  # limit 1 and 1 in flight: binding, 1 -> 2
    for i in range(100):
        cc.on_answer(3.0 + i, 2.9 + i, False, 0)  # 1 in flight < limit 2: not binding
    assert cc.limit == 2


def test_a_refused_probe_goes_back_and_waits_twice_as_long() -> None:
    cc = ConcurrencyControl(64)
    burst(cc, 64, 32)
    cc.on_answer(0.1, 0.0, False, 31)  # limit 32, stable 32, ssthresh 32
    t = 0.1
    while cc.limit < 33:
        t += 0.01
        cc.on_answer(t, t - 0.1, False, cc.limit - 1)
    assert cc.limit == 33 and t >= 1.1  # waited the 1 s probe delay
    cc.on_answer(t + 0.001, t, True, 32)  # 32 others out: the server refused the 33rd
    assert cc.limit == 32 and cc.decreases == 2
    probe_after = t + 0.001 + 2.0
    while cc.limit < 33:
        t += 0.01
        cc.on_answer(t, t - 0.1, False, cc.limit - 1)
    assert t >= probe_after


def test_sporadic_overloads_at_a_stable_limit_change_nothing() -> None:
    cc = ConcurrencyControl(64)
    for i in range(1000):
        overloaded = i % 40 == 0
        cc.on_answer(1.0 + i * 0.01, 0.9 + i * 0.01, overloaded, 63)
    assert cc.limit == 64 and cc.decreases == 0


def test_rejects_a_cap_below_one() -> None:
    with pytest.raises(ValueError):
        ConcurrencyControl(0)


def test_a_limit_told_from_outside_holds_and_grows_one_per_round_trip() -> None:
    """Timeouts in a busy server's queue: the Limiter works out how many fit within
    TIMEOUT_S (Little's law) and lowers the limit to that at once; it then grows by
    one per round trip (no slow start back into the queue), and a second word within
    the same round trip changes nothing."""
    cc = ConcurrencyControl(128)
    t = 0.0
    for _ in range(20):
        t += 0.01
        cc.on_answer(t, t - 0.4, False, 127)
    cc.limit_to(t, t - 0.5, 60)
    assert cc.limit == 60 and cc.decreases == 1 and cc.learned and not cc.frozen
    cc.limit_to(t + 0.1, t - 0.4, 40)  # sent before the decision: the same episode
    assert cc.limit == 60
    cc.limit_to(t + 0.6, t + 0.1, 90)  # never raises
    assert cc.limit == 60
    t += 1.0  # after the usual probe delay
    for _ in range(62):  # a round trip's worth of successes at the limit
        t += 0.4 / 62
        cc.on_answer(t, t - 0.4, False, cc.limit - 1)
    assert cc.limit == 61


def test_a_level_is_shown_to_hold_only_after_a_round_trip_of_clean_answers() -> None:
    # held_at (the Limiter's 'below' sign trusts ``stable`` only after it): never for
    # the cap, not right after a decision (survivors may still be refused), and no
    # longer once a level is restored (the one before the episode: no answer decided it)
    cc = ConcurrencyControl(64)
    assert cc.held_at == -math.inf
    burst(cc, 64, 32)
    cc.on_answer(0.1, 0.0, False, 31)  # decided: 32, srtt 0.1
    assert cc.stable == 32 and cc.held_at == -math.inf
    t = 0.1
    while t < 0.35:
        t += 0.01
        cc.on_answer(t, t - 0.1, False, 31)
    assert 0.3 <= cc.held_at <= 0.31  # two round trips after the decision
    cc.restore(0.4, 64)
    assert cc.stable == 64 and cc.held_at == -math.inf
