"""The Limiter's summary of every attempt for the other controllers (FlowWatch)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm._policy import OverloadSignal
from minimallm._policy.flow import CongestionEvent, FlowWatch, ReachEvent


def watch() -> tuple[OverloadSignal, FlowWatch]:
    sig = OverloadSignal()
    return sig, FlowWatch(sig)


def feed(
    sig: OverloadSignal, w: FlowWatch, now: float, sent: float, kind: str, limit: int = 8
) -> list[object]:
    if kind in ("ok", "overload", "failed"):
        sig.observe(now, sent, kind == "overload")
    return w.observe(now, sent, kind, limit)  # type: ignore[arg-type]


def test_a_healthy_server_makes_no_events() -> None:
    sig, w = watch()
    events = [e for i in range(1000) for e in feed(sig, w, i * 0.01, i * 0.01 - 0.1, "ok")]
    assert events == []
    assert w.srtt_s == pytest.approx(0.1)
    assert w.delivered_per_s(9.99) == 100.0


def test_steps_and_calm_with_the_rates_before_and_now() -> None:
    sig, w = watch()
    t = 0.0
    for _ in range(200):  # 200 successes a second
        t += 0.005
        feed(sig, w, t, t - 0.05, "ok")
    events = [e for _ in range(8) for e in feed(sig, w, t, t - 0.05, "overload")]
    assert events == [
        CongestionEvent(
            t, 1, 0, 200.0, 200.0, pytest.approx(0.05), limit_before=8, rttvar_s=pytest.approx(0.0)
        )
    ]
    t += 1.5
    (second,) = feed(sig, w, t, t - 0.1, "overload")
    assert isinstance(second, CongestionEvent) and (second.depth, second.floor_depth) == (2, 0)
    assert second.delivered_per_s == 0.0 and second.baseline_per_s == 200.0
    t += 1.5
    (third,) = feed(sig, w, t, t - 0.1, "overload", limit=1)  # concurrency can do no more
    assert isinstance(third, CongestionEvent) and (third.depth, third.floor_depth) == (3, 1)
    calm = []
    while not calm:
        t += 0.01
        calm = feed(sig, w, t, t - 0.05, "ok")
    assert isinstance(calm[0], CongestionEvent) and (calm[0].depth, calm[0].floor_depth) == (0, 0)


def test_quiet_after_an_answer_then_answered_again() -> None:
    sig, w = watch()
    for i in range(10):  # never answered: no outage to speak of
        assert feed(sig, w, i, i - 0.1, "unreachable") == []
    feed(sig, w, 10.0, 9.9, "ok")
    assert feed(sig, w, 11.0, 10.9, "timeout") == []
    assert feed(sig, w, 11.0, 10.9, "broken") == []  # a broken connection is not "no server"
    assert feed(sig, w, 11.1, 11.0, "unreachable") == []
    assert feed(sig, w, 11.2, 11.1, "unreachable") == []
    assert feed(sig, w, 11.3, 11.2, "unreachable") == [ReachEvent(11.3, False)]
    assert feed(sig, w, 11.4, 11.3, "unreachable") == []  # said once
    assert feed(sig, w, 12.0, 11.9, "failed") == [ReachEvent(12.0, True)]


def test_answers_to_attempts_sent_before_the_fall_do_not_hide_it() -> None:
    # a replica falls at 11.0 with attempts out: those may still be answered (they
    # were accepted before), which says nothing about now
    sig, w = watch()
    feed(sig, w, 10.0, 9.9, "ok")
    assert feed(sig, w, 11.01, 11.0, "unreachable") == []
    assert feed(sig, w, 11.02, 10.95, "ok") == []  # sent before the first refusal
    assert feed(sig, w, 11.03, 11.02, "unreachable") == []
    assert feed(sig, w, 11.04, 10.99, "overload") == []
    assert feed(sig, w, 11.05, 11.04, "unreachable") == []
    assert feed(sig, w, 11.06, 11.05, "unreachable") == [ReachEvent(11.06, False)]
    assert feed(sig, w, 11.2, 10.98, "ok") == []  # a late one: still down
    assert feed(sig, w, 12.0, 11.9, "ok") == [ReachEvent(12.0, True)]  # sent since: back
    # an answer to an attempt sent after a refusal breaks the run
    assert feed(sig, w, 13.0, 12.9, "unreachable") == []
    assert feed(sig, w, 13.1, 13.0, "ok") == []
    for t in (13.2, 13.3, 13.4):
        assert feed(sig, w, t, t - 0.05, "unreachable") == []


def test_refusals_that_stay_when_the_client_backs_off_are_load_independent() -> None:
    # 100 answers a second at full speed, half refused whatever the load: once the
    # client sends no faster than it was served, the share is the same: tolerated
    sig, w = watch()
    rng = __import__("random").Random(1)
    t, events = 0.0, []
    for _ in range(400):
        t += 0.01
        events += feed(sig, w, t, t - 0.05, "overload" if rng.random() < 0.5 else "ok", 32)
    assert [e.depth for e in events if isinstance(e, CongestionEvent)][:1] == [1]
    for _ in range(400):  # backed off to a quarter of the pace: still half refused
        t += 0.04
        events += feed(sig, w, t, t - 0.05, "overload" if rng.random() < 0.5 else "ok", 4)
    ends = [e for e in events if isinstance(e, CongestionEvent) and e.independent]
    assert len(ends) == 1
    assert (ends[0].depth, ends[0].limit_before) == (0, 32)
    # the share tolerated: the mean of two windows of 64 answers in a row
    assert 0.25 <= sig.floor <= 0.7 and sig.depth == 0


def test_refusals_that_stop_when_the_client_backs_off_are_a_real_limit() -> None:
    # a token bucket: refusals above its rate, none below
    sig, w = watch()
    t, events = 0.0, []
    for i in range(400):  # 100 sends a second at a limit of 50: every other refused
        t += 0.01
        events += feed(sig, w, t, t - 0.05, "overload" if i % 2 else "ok", 32)
    for _ in range(400):  # backed off below the limit: served
        t += 0.025
        events += feed(sig, w, t, t - 0.05, "ok", 4)
    assert not any(isinstance(e, CongestionEvent) and e.independent for e in events)
    assert sig.floor == 0.0


def test_timeouts_while_the_server_answers_others_are_not_an_outage() -> None:
    """A queueing server (llama.cpp) with TIMEOUT_S below its queue wait: attempts time
    out while others sent no earlier are answered. The server is busy, not gone."""
    sig, w = watch()
    feed(sig, w, 1.0, 0.9, "ok")
    events = []
    for i in range(50):  # each timed out after 0.5 s; others answered meanwhile
        t = 2.0 + i * 0.1
        events += feed(sig, w, t, t - 0.5, "timeout")
        events += feed(sig, w, t, t - 0.45, "timeout")
        events += feed(sig, w, t + 0.05, t - 0.4, "ok") if i % 4 == 0 else []
    assert events == []
    assert not w.quiet


def test_timeouts_after_the_last_answer_are_an_outage() -> None:
    """Attempts sent after the server's last answer that all time out: nobody answers."""
    sig, w = watch()
    feed(sig, w, 1.0, 0.9, "ok")
    feed(sig, w, 1.6, 0.95, "timeout")  # sent before the last answer: busy, not gone
    assert [e for i in range(3) for e in feed(sig, w, 2.0 + i, 1.5 + i, "timeout")] == []
    assert feed(sig, w, 5.0, 4.5, "timeout") == [ReachEvent(5.0, False)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0.01, 2.0), st.booleans()), min_size=1, max_size=200))
def test_a_server_that_answers_after_each_timed_out_send_is_never_gone(
    steps: list[tuple[float, bool]],
) -> None:
    """Whatever the timing: when some answer came after every timed-out attempt was
    sent, the server is not declared gone."""
    sig, w = watch()
    t = 1.0
    feed(sig, w, t, t - 0.1, "ok")
    last_answer = t
    for gap, answer in steps:
        t += gap
        if answer:
            feed(sig, w, t, t - 0.1, "ok")
            last_answer = t
        else:  # sent no later than the last answer, timed out now
            sent = last_answer - 0.001
            assert feed(sig, w, t, sent, "timeout") == []
    assert not w.quiet


def test_the_fastest_answers_now_and_at_first() -> None:
    """The fastest tenth of the first wave's latencies (the attempts out when the first
    success came) and of the recent ones: a queueing server, 16 slots of 0.1 s, 128 sent
    at once, then every answer waiting 0.7 s in its queue."""
    _, w = watch()
    assert w.fast_latencies() == (None, None)
    t = 0.0
    for i in range(128):  # the first wave: 16 at a time, 0.1 s each
        t = 0.1 * (i // 16 + 1)
        w.observe(t, 0.0, "ok", 128, in_flight=128 - i)
        if i < 12:  # its fastest tenth is its 13th answer
            assert w.fast_latencies()[1] is None
    assert w.fast_latencies() == (pytest.approx(0.1), pytest.approx(0.1))
    for _ in range(300):
        t += 0.01
        w.observe(t, t - 0.8, "ok", 128, in_flight=128)
    assert w.fast_latencies() == (pytest.approx(0.8), pytest.approx(0.1))


@settings(max_examples=50, deadline=None)
@given(
    sigma=st.floats(0.1, 1.5),
    wave=st.integers(8, 256),
    seed=st.integers(0, 2**32 - 1),
)
def test_the_first_waves_fastest_tenth_is_that_of_all_its_latencies(
    sigma: float, wave: int, seed: int
) -> None:
    """Sent at once, answered in the order of their latencies: the first wave's figure
    is the k-th fastest of all its latencies, k a tenth of the wave (not the fastest of
    the first few answers, which a server whose latencies merely vary would make look
    like a queue later)."""
    rng = random.Random(seed)
    latencies = sorted(math.exp(rng.gauss(0.0, sigma)) for _ in range(wave))
    _, w = watch()
    for i, latency in enumerate(latencies):
        w.observe(latency, 0.0, "ok", wave, in_flight=wave - i)
    assert w.fast_latencies()[1] == latencies[math.ceil(wave / 10) - 1]
