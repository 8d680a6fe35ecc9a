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
