"""The token budget's pure core: estimates, a sliding 60 s window, settlement,
oversize requests alone, the server's token headers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm._policy.ratelimit import RateLimitInfo
from minimallm._policy.tokens import WINDOW_S, TokenBudget, estimate_tokens


def test_estimate_counts_characters_and_the_completion() -> None:
    msgs = [{"role": "system", "content": "x" * 40}, {"role": "user", "content": "y" * 360}]
    assert estimate_tokens(msgs, None, None, 50.0) == 100 + 50
    assert estimate_tokens(msgs, 10, None, 50.0) == 110
    assert estimate_tokens(msgs, None, {"max_completion_tokens": 7}, 50.0) == 107
    parts = [{"role": "user", "content": [{"type": "text", "text": "z" * 8}, {"type": "image"}]}]
    assert estimate_tokens(parts, None, None, 0.0) == 2


def test_waits_until_enough_has_left_the_window() -> None:
    b = TokenBudget(1000)
    assert b.ready_at(0.0, 600) == 0.0
    b.reserve(0.0, 600)
    assert b.ready_at(1.0, 300) == 1.0
    b.reserve(1.0, 300)
    assert b.ready_at(2.0, 300) == pytest.approx(WINDOW_S)  # the first 600 leave at 60
    b.reserve(WINDOW_S, 300)
    assert b.in_window(WINDOW_S) == 600


def test_settlement_makes_room_at_once() -> None:
    b = TokenBudget(1000)
    r = b.reserve(0.0, 900)
    assert b.ready_at(0.5, 500) == WINDOW_S
    b.settle(r, 200)  # it used less than estimated
    assert b.ready_at(0.5, 500) == 0.5
    old = b.reserve(1.0, 100)
    b.ready_at(62.0, 1)  # expires both
    b.settle(old, 50)  # a late settlement of an expired entry changes nothing
    assert b.in_window(62.0) == 0


def test_an_oversize_request_goes_alone_and_never_waits_forever() -> None:
    b = TokenBudget(1000)
    b.reserve(0.0, 400)
    assert b.ready_at(1.0, 5000) == WINDOW_S  # once the window is empty
    b.reserve(WINDOW_S, 5000)
    assert b.oversize == 1
    assert b.ready_at(61.0, 10) == 2 * WINDOW_S  # nothing else while it is in the window


def test_the_server_headers_lower_the_budget_and_hold_at_zero() -> None:
    b = TokenBudget(100_000)
    b.learn(0.0, RateLimitInfo(limit_tokens=1000, remaining_tokens=500, reset_tokens_s=3.0))
    assert b.budget == 1000
    b.learn(1.0, RateLimitInfo(limit_tokens=1000, remaining_tokens=0, reset_tokens_s=4.0))
    assert b.ready_at(1.0, 10) == 5.0


@settings(max_examples=300, deadline=None)
@given(
    tpm=st.integers(100, 10_000),
    steps=st.lists(
        st.tuples(
            st.floats(0.0, 30.0),  # time until the next try
            st.integers(1, 12_000),  # estimate
            st.floats(0.0, 1.0),  # settled fraction of the estimate
        ),
        max_size=60,
    ),
)
def test_no_60_s_window_holds_more_than_the_budget(
    tpm: int, steps: list[tuple[float, int, float]]
) -> None:
    b = TokenBudget(tpm)
    now = 0.0
    sent: list[tuple[float, int]] = []  # (time, final tokens)
    entries = []
    for gap, estimate, used in steps:
        now = b.ready_at(now + gap, estimate)
        entry = b.reserve(now, estimate)
        entries.append(entry)
        b.settle(entries[len(entries) // 2], int(entries[len(entries) // 2].tokens * used))
    sent = [(e.at, e.tokens) for e in entries]
    for start, _ in sent:  # every window starting at a send (the worst ones)
        inside = [t for at, t in sent if start <= at < start + WINDOW_S]
        assert sum(inside) <= tpm or len(inside) == 1
