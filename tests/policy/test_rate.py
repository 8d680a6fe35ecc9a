"""The learned send rate (RateControl)."""

from __future__ import annotations

import pytest

from minimallm._policy import RateControl, RateLimitInfo


def info(
    remaining: int, limit: int = 20, reset: float | None = None, rate: float = 200.0
) -> RateLimitInfo:
    if reset is None:
        reset = (limit - remaining) / rate
    return RateLimitInfo(limit_requests=limit, remaining_requests=remaining, reset_requests_s=reset)


def test_no_word_no_rate() -> None:
    rc = RateControl()
    rc.on_congestion(1.0, 0, delivered_per_s=10.0, baseline_per_s=50.0, srtt_s=0.1)
    assert rc.rate(1.0) is None and rc.interval_s(1.0) is None and rc.source(1.0) is None
    assert rc.wake_at() == float("inf")


def test_headers_give_the_bucket_rate_scaled_by_how_full_it_is() -> None:
    rc = RateControl()
    rc.on_headers(1.0, info(10))  # half full: exactly the refill rate
    assert rc.rate(1.0) == pytest.approx(200.0)
    assert rc.source(1.0) == "headers"
    rc = RateControl()
    rc.on_headers(1.0, info(0))  # empty: refill at 0.75 R
    assert rc.rate(1.0) == pytest.approx(150.0)
    rc = RateControl()
    rc.on_headers(1.0, info(19))  # nearly full: drain at ~1.225 R
    assert rc.rate(1.0) == pytest.approx(245.0)
    assert rc.interval_s(1.0) == pytest.approx(1 / 245.0)


def test_header_samples_are_smoothed_and_expire() -> None:
    rc = RateControl()
    rc.on_headers(1.0, info(10))
    rc.on_headers(1.1, info(10, rate=600.0))
    assert rc.rate(1.1) == pytest.approx(200.0 + (600.0 - 200.0) / 4)
    assert rc.rate(1.1 + 61.0) is None  # a minute without headers: forgotten


def test_token_headers_use_the_tokens_a_request_takes() -> None:
    rc = RateControl()
    tokens = RateLimitInfo(limit_tokens=10_000, remaining_tokens=5_000, reset_tokens_s=5.0)
    rc.on_headers(1.0, tokens, 100)  # 1000 tokens/s, 100 per request
    assert rc.rate(1.0) == pytest.approx(10.0)


def test_persisting_overload_without_headers_cuts_to_what_was_delivered() -> None:
    rc = RateControl()
    rc.on_congestion(1.0, 1, delivered_per_s=100.0, baseline_per_s=200.0, srtt_s=0.1)
    assert rc.rate(1.0) == pytest.approx(90.0) and rc.source(1.0) == "learned"
    assert rc.wake_at() == pytest.approx(1.1)


def test_growth_doubles_below_the_threshold_then_two_percent() -> None:
    rc = RateControl(idle_s=100.0)
    rc.on_congestion(1.0, 1, delivered_per_s=0.0, baseline_per_s=100.0, srtt_s=0.1)
    assert rc.rate(1.0) == 0.5  # nothing delivered: the floor
    rc.on_congestion(1.05, 1, delivered_per_s=0.0, baseline_per_s=100.0, srtt_s=0.1)
    assert rc.rate(1.05) == 0.5  # the same step again: no second cut
    rates = []
    t = 1.05
    while len(rates) < 10:
        t = rc.wake_at()
        rc.tick(t)
        rates.append(rc.rate(t))
    assert rates[:8] == [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 100.0]
    assert rates[8] == pytest.approx(102.0) and rates[9] == pytest.approx(104.04)


def test_a_learned_rate_nobody_uses_is_forgotten() -> None:
    rc = RateControl(idle_s=2.0)
    rc.on_congestion(1.0, 1, delivered_per_s=50.0, baseline_per_s=60.0, srtt_s=0.1)
    rc.on_congestion(1.05, 0, delivered_per_s=50.0, baseline_per_s=60.0, srtt_s=0.1)
    t = 1.05
    while rc.rate(t) is not None and t < 100:
        t = rc.wake_at()
        rc.tick(t)  # no paced sends at all: far below the learned rate
    assert rc.rate(t) is None and t < 5


def test_a_daily_budget_with_plenty_left_is_no_rate() -> None:
    rc = RateControl(plenty=64)
    rc.on_headers(1.0, info(10))  # a small bucket: paced
    assert rc.rate(1.0) is not None
    daily = RateLimitInfo(limit_requests=10_000, remaining_requests=9_990, reset_requests_s=86340)
    rc.on_headers(2.0, daily)  # 10 used in 23h59m would pace at 1 per 2.4 h
    assert rc.rate(2.0) is None and rc.source(2.0) is None
    low = RateLimitInfo(limit_requests=10_000, remaining_requests=30, reset_requests_s=3600)
    rc.on_headers(3.0, low)  # running low: the headers pace again
    assert rc.rate(3.0) is not None


def test_plenty_of_tokens_left_is_no_rate_either() -> None:
    rc = RateControl(plenty=64)
    tokens = RateLimitInfo(limit_tokens=10**9, remaining_tokens=10**9 - 500, reset_tokens_s=86000)
    rc.on_headers(1.0, tokens, 100)
    assert rc.rate(1.0) is None


# -- a rate limit without headers: the limited rate ------------------------------------


def limited(at: float = 1.0, during: float = 200.0, rttvar: float = 0.0) -> RateControl:
    """A RateControl that saw a token bucket's second step at ``at``: the server
    delivered ``during`` a second while refusing, latency 0.1 s steady."""
    rc = RateControl()
    step = {"delivered_per_s": during, "baseline_per_s": 0.0, "srtt_s": 0.1}
    rc.on_congestion(at - 0.2, 0, depth=1, **step)
    rc.on_congestion(at, 0, depth=2, during_per_s=during, rttvar_s=rttvar, **step)
    return rc


def test_a_second_step_while_the_server_delivers_is_a_rate_limit() -> None:
    rc = limited()
    assert rc.rate(1.0) == pytest.approx(0.97 * 200.0) and rc.source(1.0) == "learned"


@pytest.mark.parametrize(
    ("during", "rttvar", "headers"),
    [
        (0.0, 0.0, False),  # a storm: nothing delivered while refusing
        (200.0, 0.05, False),  # latency varies: may be a server with few slots
        (200.0, 0.0, True),  # the server's rate headers say more
    ],
)
def test_no_limited_rate_without_its_signs(during: float, rttvar: float, headers: bool) -> None:
    rc = RateControl()
    if headers:
        rc.on_headers(0.5, info(10))
    step = {"delivered_per_s": during, "baseline_per_s": 0.0, "srtt_s": 0.1}
    rc.on_congestion(0.8, 0, depth=1, **step)
    rc.on_congestion(1.0, 0, depth=2, during_per_s=during, rttvar_s=rttvar, **step)
    assert rc.source(1.0) != "learned"


def test_a_refusal_below_the_concurrency_that_held_is_a_rate_limits_sign() -> None:
    rc = RateControl()
    rc.on_refusal(0.9, 0.899, below=True)  # slots never refuse with fewer out
    step = {"delivered_per_s": 200.0, "baseline_per_s": 0.0, "srtt_s": 0.1}
    rc.on_congestion(0.8, 0, depth=1, **step)
    rc.on_congestion(1.0, 0, depth=2, during_per_s=200.0, rttvar_s=0.05, **step)
    assert rc.rate(1.0) == pytest.approx(194.0)


def paced(rc: RateControl, start: float, end: float) -> float:
    """Send at the learned rate from ``start`` to ``end`` (ticking when asked)."""
    t = start
    while t < end:
        rate = rc.rate(t)
        assert rate is not None
        t += 1 / rate
        rc.on_send(t)
        if t >= rc.wake_at():
            rc.tick(t)
    return t


def test_the_limited_rate_grows_gently_and_faster_the_longer_no_refusal_comes() -> None:
    rc = limited()
    t = paced(rc, 1.0, 2.0)
    first = rc.rate(t)
    # 4 %/s at first, growing 25 % a second: the estimate made at the step is often low
    assert first == pytest.approx(194.0 * 1.045, rel=0.003)
    t = paced(rc, t, 6.0)
    r5 = rc.rate(t)
    t = paced(rc, t, 7.0)
    r6 = rc.rate(t)
    assert r5 is not None and r6 is not None and r6 / r5 > 1.02  # 2.4 %/s by then


def test_an_overshoot_cuts_to_just_under_what_the_server_delivers() -> None:
    rc = limited()
    t = paced(rc, 1.0, 4.0)
    before, sends = rc.rate(t), rc_sends(rc, t)
    assert before is not None and before > 194.0
    for i in range(4):  # the bucket ran dry: refused; once per round trip counts
        rc.on_refusal(t + 0.001 * i, t - 0.01)
    assert rc.rate(t) == pytest.approx(0.97 * min(before, sends * (1 - 1 / sends)), rel=1e-3)


def rc_sends(rc: RateControl, now: float) -> float:
    return rc._sends.rate(now)


def test_refusals_that_pacing_does_not_stop_forget_the_limited_rate() -> None:
    rc = limited()
    step = {"delivered_per_s": 100.0, "baseline_per_s": 0.0, "srtt_s": 0.1}
    rc.on_congestion(1.3, 0, depth=3, during_per_s=100.0, **step)  # the cut did not help
    assert rc.rate(1.3) is None
    rc.on_congestion(1.6, 0, depth=4, during_per_s=100.0, **step)  # nor again, this episode
    assert rc.rate(1.6) is None
    rc.on_congestion(5.0, 0, depth=0, **step)  # calm: the next episode may be one
    rc.on_congestion(6.0, 0, depth=1, **step)
    rc.on_congestion(6.2, 0, depth=2, during_per_s=100.0, **step)
    assert rc.rate(6.2) == pytest.approx(97.0)


def test_refusals_whatever_the_pace_strike_the_limited_rate_out() -> None:
    rc = limited()
    t = 1.0
    for strike in range(1, 5):  # each refusal soon after the cut before it: a strike
        t = paced(rc, t, t + 0.2)
        before = rc.rate(t)
        assert before is not None
        rc.on_refusal(t, t - 0.01)
        if strike < 4:  # the cut before was not enough: 10 % at least
            assert rc.rate(t) == pytest.approx(0.9 * before)
    assert rc.rate(t) is None  # the fourth in a row: no rate limit's refusals


def test_a_latency_steady_for_a_moment_only_is_no_sign() -> None:
    # a server with few slots and a varying latency: its rttvar dips under STEADY now
    # and then, and a step at such a moment is no rate limit's (its steps come every
    # few ms while the concurrency probes one above the slots); steady means steady
    # for EVIDENCE_S
    rc = RateControl()
    step = {"delivered_per_s": 150.0, "baseline_per_s": 0.0, "srtt_s": 0.1}
    rc.on_congestion(0.8, 0, depth=1, **step)
    rc.on_congestion(0.9, 0, depth=2, during_per_s=150.0, rttvar_s=0.03, **step)
    rc.on_congestion(1.0, 0, depth=3, during_per_s=150.0, rttvar_s=0.009, **step)
    assert rc.source(1.0) is None
    rc.on_congestion(3.0, 0, depth=4, during_per_s=150.0, rttvar_s=0.009, **step)
    assert rc.source(3.0) == "learned"  # steady for EVIDENCE_S since the last variation
