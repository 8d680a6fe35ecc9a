"""Reading x-ratelimit-* headers."""

from __future__ import annotations

import pytest

from minimallm._policy import RateLimitInfo, parse_duration, parse_rate_limit_headers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("6m0s", 360.0),
        ("1s", 1.0),
        ("20ms", 0.02),
        ("1.5s", 1.5),
        ("1h2m3.5s", 3723.5),
        ("250us", 0.00025),
        ("12", 12.0),
        ("0.5", 0.5),
        (" 7s ", 7.0),
        ("", None),
        ("abc", None),
        ("5x", None),
        ("-3s", None),
        ("1s2", None),
        ("m", None),
        ("1h1h1h", None),  # garbage seen from a gateway: not three hours
        ("5s1h", None),
        ("1m1m", None),
        ("23h59m", 86340.0),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    got = parse_duration(text)
    assert got == (pytest.approx(seconds) if seconds is not None else None)


def test_headers_give_the_refill_rate_and_fill() -> None:
    info = parse_rate_limit_headers(
        {
            "x-ratelimit-limit-requests": "20",
            "x-ratelimit-remaining-requests": "10",
            "x-ratelimit-reset-requests": "50ms",
            "x-ratelimit-limit-tokens": "1000",
            "x-ratelimit-remaining-tokens": "250",
            "x-ratelimit-reset-tokens": "1.5s",
        }
    )
    assert info is not None
    assert info.request_rate() == pytest.approx(200.0)  # 10 used, full again in 50 ms
    assert info.request_fill() == 0.5
    assert info.token_rate() == pytest.approx(500.0)
    assert info.token_fill() == 0.25
    assert not info.exhausted


def test_full_bucket_says_nothing_about_the_rate_and_zero_means_exhausted() -> None:
    full = RateLimitInfo(limit_requests=10, remaining_requests=10, reset_requests_s=0.0)
    assert full.request_rate() is None and full.request_fill() == 1.0
    assert RateLimitInfo(remaining_requests=0).exhausted
    assert RateLimitInfo(remaining_tokens=0).exhausted


def test_no_headers_or_garbage() -> None:
    assert parse_rate_limit_headers({"content-type": "application/json"}) is None
    info = parse_rate_limit_headers(
        {"x-ratelimit-limit-requests": "many", "x-ratelimit-reset-requests": "soon"}
    )
    assert info is None  # nothing readable


def test_a_reset_given_as_a_moment_is_the_wait_until_it() -> None:
    headers = {
        "x-ratelimit-limit-requests": "100",
        "x-ratelimit-remaining-requests": "40",
        "x-ratelimit-reset-requests": "1733500030",
    }
    info = parse_rate_limit_headers(headers, now_wall=1733500000.0)
    assert info is not None and info.reset_requests_s == pytest.approx(30.0)
    info = parse_rate_limit_headers(headers)  # no wall clock: the moment is ignored
    assert info is not None and info.reset_requests_s is None
