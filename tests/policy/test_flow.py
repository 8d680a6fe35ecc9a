"""The Limiter's summary of every attempt for the other controllers (FlowWatch)."""

from __future__ import annotations

import pytest

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
