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
    for i in range(100):
        rc.on_answer(0.01 * i, 0.01 * i - 0.005, False)
    assert rc.rate(1.0) is None and rc.interval_s(1.0) is None and rc.source(1.0) is None


def test_headers_give_the_bucket_rate_scaled_by_how_full_it_is() -> None:
    rc = RateControl()
    rc.on_answer(1.0, 0.99, False, info=info(10))  # half full: exactly the refill rate
    assert rc.rate(1.0) == pytest.approx(200.0)
    assert rc.source(1.0) == "headers"
    rc = RateControl()
    rc.on_answer(1.0, 0.99, False, info=info(0))  # empty: refill at 0.75 R
    assert rc.rate(1.0) == pytest.approx(150.0)
    rc = RateControl()
    rc.on_answer(1.0, 0.99, False, info=info(19))  # nearly full: drain at ~1.225 R
    assert rc.rate(1.0) == pytest.approx(245.0)
    assert rc.interval_s(1.0) == pytest.approx(1 / 245.0)


def test_header_samples_are_smoothed_and_expire() -> None:
    rc = RateControl()
    rc.on_answer(1.0, 0.99, False, info=info(10))
    rc.on_answer(1.1, 1.09, False, info=info(10, rate=600.0))
    assert rc.rate(1.1) == pytest.approx(200.0 + (600.0 - 200.0) / 4)
    assert rc.rate(1.1 + 61.0) is None  # a minute without headers: forgotten


def test_token_headers_use_the_tokens_a_request_takes() -> None:
    rc = RateControl()
    tokens = RateLimitInfo(limit_tokens=10_000, remaining_tokens=5_000, reset_tokens_s=5.0)
    rc.on_answer(1.0, 0.9, False, info=tokens, tokens=100)  # 1000 tokens/s, 100 per request
    assert rc.rate(1.0) == pytest.approx(10.0)


def test_persisting_overload_without_headers_cuts_to_what_was_delivered() -> None:
    rc = RateControl()
    t = 0.0
    for _ in range(100):  # 100 successes over the last second
        t += 0.01
        rc.on_answer(t, t - 0.005, False)
    for _ in range(8):  # a first step: the concurrency limit's business
        rc.on_answer(t, t - 0.005, True)
    assert rc.rate(t) is None and rc.signal.depth == 1
    t += 0.05
    rc.on_answer(t, t - 0.01, True)  # sent after the first step: it persisted
    assert rc.signal.depth == 2
    assert rc.source(t) == "learned"
    assert rc.rate(t) == pytest.approx(0.9 * 100 / 1.05, rel=0.1)


def test_growth_doubles_below_the_threshold_then_two_percent() -> None:
    rc = RateControl(min_rate=0.5)
    rc.on_answer(0.0, -0.1, False)
    for _ in range(8):
        rc.on_answer(0.0, -0.1, True)
    rc.on_answer(0.2, 0.1, True)  # depth 2: 0.9 x what was delivered (1 in 0.2 s)
    assert rc.rate(0.2) == pytest.approx(4.5)
    t = 0.2
    while rc.signal.depth:  # the episode ends once answers are clean again
        t += 0.001
        rc.on_answer(t, t - 0.1, False)
    rates = []
    for _ in range(5):
        t += 0.1
        rc.on_answer(t, t - 0.1, False)
        rates.append(rc.rate(t))
    assert rates[1] == 2 * rates[0]


def test_a_learned_rate_nobody_uses_is_forgotten() -> None:
    rc = RateControl(idle_s=2.0)
    rc.on_answer(0.0, -0.1, False)
    for _ in range(8):
        rc.on_answer(0.0, -0.1, True)
    rc.on_answer(0.2, 0.1, True)
    t = 0.2
    while rc.rate(t) is not None and t < 200:
        t += 0.1
        rc.on_answer(t, t - 0.1, False)  # ten sends a second: far below the learned rate
    assert rc.rate(t) is None and t < 60
