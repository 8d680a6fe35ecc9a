"""The mock server's pure decisions: token buckets and rate headers, the timeline of
outages and storms, the per-request verdict, and their counters (clock injected)."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from minimallm import ConfigError
from minimallm.mock import MockServerConfig, Outage, Storm
from minimallm.mock.cli import build_parser, config_from_args, config_to_argv
from minimallm.mock.decide import BLACKHOLE, CAPACITY, RATELIMIT, STORM, Decider, draw_latency
from minimallm.mock.faults import NO_DIRECTIVES, parse_directives
from minimallm.mock.ratelimit import (
    RateLimiter,
    TokenBucket,
    format_duration,
    request_tokens,
    retry_after_headers,
)
from minimallm.mock.state import MockState
from minimallm.mock.timeline import NORMAL, Timeline, parse_outage, parse_storm

# --- durations and Retry-After ------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "openai", "plain"),
    [
        (0.0, "0s", "0"),
        (0.02, "20ms", "0.02"),
        (0.0004, "0s", "0"),
        (0.999, "999ms", "0.999"),
        (1.0, "1s", "1"),
        (1.5, "1.5s", "1.5"),
        (59.25, "59.25s", "59.25"),
        (360.0, "6m0s", "360"),
        (3725.0, "1h2m5s", "3725"),
        (3600.0, "1h0m0s", "3600"),
    ],
)
def test_durations_are_written_like_openai_or_as_seconds(
    seconds: float, openai: str, plain: str
) -> None:
    assert format_duration(seconds) == openai
    assert format_duration(seconds, "seconds") == plain


def test_retry_after_rounds_up_to_whole_seconds_and_ms_is_exact() -> None:
    assert retry_after_headers(0.005) == (("retry-after", "1"), ("retry-after-ms", "5"))
    assert retry_after_headers(2.0) == (("retry-after", "2"), ("retry-after-ms", "2000"))
    assert retry_after_headers(2.0004) == (("retry-after", "3"), ("retry-after-ms", "2001"))
    exact = retry_after_headers(0.005, "exact")
    assert exact == (("retry-after", "0.005"), ("retry-after-ms", "5"))


def test_request_tokens_count_words_and_max_tokens() -> None:
    body = {"messages": [{"content": "a b c"}, {"content": "d"}, "junk"], "max_tokens": 10}
    assert request_tokens(body) == 14
    assert request_tokens({"messages": [{"content": "a b"}], "max_completion_tokens": 3}) == 5
    assert request_tokens({"messages": "nope", "max_tokens": True}) == 0
    assert request_tokens(None) == 0


# --- token bucket -------------------------------------------------------------------


def test_bucket_starts_full_refills_and_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate_per_s=10.0, capacity=3, now=100.0)
    assert [bucket.take(1, 100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.take(1, 100.0) == pytest.approx(0.1)
    assert bucket.take(1, 100.05) == pytest.approx(0.05)  # nothing taken by refusals
    assert bucket.take(1, 100.1) == 0.0  # waiting exactly the advertised time passes
    assert bucket.until_full(100.1) == pytest.approx(0.3)
    assert bucket.level(200.0) == 3.0  # never above capacity
    assert bucket.take(50, 200.0) == 0.0  # more than the capacity counts as the capacity
    assert bucket.level(200.0) == 0.0
    with pytest.raises(ValueError, match="rate_per_s"):
        TokenBucket(0.0, 3, 0.0)
    with pytest.raises(ValueError, match="capacity"):
        TokenBucket(1.0, 0.5, 0.0)


@given(
    rate=st.floats(0.5, 500.0),
    burst=st.integers(1, 50),
    gaps=st.lists(st.floats(0.0, 0.2), min_size=1, max_size=300),
)
def test_bucket_never_admits_more_than_burst_plus_rate_times_elapsed(
    rate: float, burst: int, gaps: list[float]
) -> None:
    bucket = TokenBucket(rate, burst, now=0.0)
    now, admitted = 0.0, 0
    for gap in gaps:
        now += gap
        if bucket.take(1, now) == 0.0:
            admitted += 1
        assert admitted <= burst + rate * now + 1e-6


# --- rate limiter ---------------------------------------------------------------------


def test_limiter_headers_on_success_and_refusal() -> None:
    limiter = RateLimiter(rate_per_s=10.0, burst=2, now=0.0)
    first, second, third = (limiter.check(0, 0.0) for _ in range(3))
    assert first.allowed and second.allowed and not third.allowed
    assert dict(first.headers) == {
        "x-ratelimit-limit-requests": "2",
        "x-ratelimit-remaining-requests": "1",
        "x-ratelimit-reset-requests": "100ms",
    }
    assert dict(second.headers)["x-ratelimit-remaining-requests"] == "0"
    assert dict(second.headers)["x-ratelimit-reset-requests"] == "200ms"
    assert third.wait_s == pytest.approx(0.1)
    assert third.headers[:2] == (("retry-after", "1"), ("retry-after-ms", "100"))
    assert dict(third.headers)["x-ratelimit-remaining-requests"] == "0"
    assert limiter.check(0, 0.1).allowed


def test_limiter_token_budget_and_silent_mode() -> None:
    limiter = RateLimiter(
        rate_per_s=100.0,
        burst=100,
        now=0.0,
        token_rate_per_s=10.0,
        token_burst=20,
        reset_style="seconds",
        retry_after_style="exact",
    )
    ok = limiter.check(15, 0.0)
    assert ok.allowed
    assert dict(ok.headers)["x-ratelimit-remaining-tokens"] == "5"
    assert dict(ok.headers)["x-ratelimit-reset-tokens"] == "1.5"
    refused = limiter.check(15, 0.0)  # 5 tokens left, 10 more take 1 s
    assert not refused.allowed
    assert dict(refused.headers)["retry-after"] == "1"
    assert dict(refused.headers)["retry-after-ms"] == "1000"
    assert dict(refused.headers)["x-ratelimit-remaining-requests"] == "99"  # not charged
    silent = RateLimiter(rate_per_s=1.0, burst=1, now=0.0, headers=False)
    assert silent.check(0, 0.0).headers == ()
    refused = silent.check(0, 0.0)
    assert (refused.allowed, refused.headers) == (False, ())


# --- timeline -------------------------------------------------------------------------


def test_timeline_finds_the_active_phase_and_labels_repeats() -> None:
    timeline = Timeline((Storm(10, 5), Outage(2, 3), Storm(20, 1, 503, None)))
    assert timeline.labels == ("outage", "storm", "storm-2")
    assert [timeline.at(t) for t in (0, 1.99, 2, 4.99, 5, 10, 14.9, 15, 20.5, 21)] == [
        None, None, 0, 0, None, 1, 1, None, 2, None,
    ]  # fmt: skip
    assert timeline.label(None) == NORMAL
    assert not Timeline()
    with pytest.raises(ValueError, match="overlap"):
        Timeline((Outage(0, 10), Storm(5, 10)))


def test_phase_text_parses_and_refuses_bad_values() -> None:
    assert parse_outage("2:20") == Outage(2.0, 20.0, "refuse")
    assert parse_outage("2:20:blackhole") == Outage(2.0, 20.0, "blackhole")
    assert parse_storm("5:30") == Storm(5.0, 30.0, 429, 1.0)
    assert parse_storm("5:30:503:none") == Storm(5.0, 30.0, 503, None)
    for bad, match in [
        ("2", "START:DURATION"),
        ("2:20:sideways", "mode"),
        ("x:20", "not a number"),
        ("2:0", "duration_s"),
        ("-1:3", "start_s"),
    ]:
        with pytest.raises(ValueError, match=match):
            parse_outage(bad)
    with pytest.raises(ValueError, match="status"):
        parse_storm("1:2:200")
    with pytest.raises(ValueError, match="HTTP status"):
        parse_storm("1:2:abc")


# --- the verdict --------------------------------------------------------------------------


def decide(decider: Decider, now: float, in_flight: int = 1, content: str = "q") -> Any:
    directives = parse_directives(content) if "#mock:" in content else NO_DIRECTIVES
    body = {"messages": [{"content": content}]}
    return decider.decide(
        now=now, in_flight=in_flight, body=body, content=content, directives=directives
    )


def test_phases_come_first_and_count_from_the_first_request() -> None:
    config = MockServerConfig(
        rate_limit_per_s=1.0,
        burst=1,
        phases=(Outage(1, 1, "blackhole"), Storm(3, 1, 503, 2.5), Outage(5, 1)),
    )
    decider = Decider(config, random.Random(0))
    assert decide(decider, 50.0).kind == "ok"  # the origin: t = 50
    assert decide(decider, 50.5).kind == RATELIMIT
    hole = decide(decider, 51.0)
    assert (hole.kind, hole.phase) == (BLACKHOLE, "outage")
    assert decider.blackholed(51.5) and not decider.blackholed(52.0)
    storm = decide(decider, 53.2)
    assert (storm.kind, storm.status, storm.headers, storm.phase) == (
        STORM, 503, (("retry-after", "2.5"),), "storm",
    )  # fmt: skip
    assert decide(decider, 55.0).kind == "reset"  # a refuse outage: caught on its way
    after = decide(decider, 56.0)
    assert (after.kind, after.phase) == ("ok", NORMAL)
    assert dict(after.headers)["x-ratelimit-remaining-requests"] == "0"


@pytest.mark.parametrize(("mode", "status"), [("429", 429), ("503", 503)])
def test_capacity_refuses_with_its_status_or_queues(mode: str, status: int) -> None:
    config = MockServerConfig(capacity=2, capacity_mode=mode, retry_after_s=None)  # type: ignore[arg-type]
    decider = Decider(config, random.Random(0))
    assert decide(decider, 0.0, in_flight=2).kind == "ok"
    refused = decide(decider, 0.0, in_flight=3)
    assert (refused.kind, refused.status, refused.headers) == (CAPACITY, status, ())
    queued = Decider(MockServerConfig(capacity=2, capacity_mode="queue"), random.Random(0))
    verdict = decide(queued, 0.0, in_flight=3)
    assert (verdict.kind, verdict.queue) == ("ok", True)


def test_fault_statuses_carry_the_configured_retry_after() -> None:
    plain = Decider(MockServerConfig(), random.Random(0))
    assert decide(plain, 0.0, content="#mock:fault=503").headers == ()
    assert decide(plain, 0.0, content="a #mock:fault=429").headers == (("retry-after", "1"),)
    told = Decider(MockServerConfig(fault_retry_after_s=2.0), random.Random(0))
    assert decide(told, 0.0, content="#mock:fault=503").headers == (("retry-after", "2"),)
    assert decide(told, 0.0, content="b #mock:fault=500").headers == ()
    assert decide(told, 0.0, content="c #mock:fault=503 #mock:retry_after=7").headers == (
        ("retry-after", "7"),
    )


def test_lognormal_latency_has_the_configured_median() -> None:
    config = MockServerConfig(latency_s=0.1, latency_dist="lognormal", latency_sigma=0.5)
    rng = random.Random(7)
    draws = [draw_latency(config, rng) for _ in range(4000)]
    assert statistics.median(draws) == pytest.approx(0.1, rel=0.05)
    assert statistics.fmean(draws) == pytest.approx(0.1 * math.exp(0.125), rel=0.05)
    assert min(draws) > 0
    fixed = MockServerConfig(latency_s=0.1, latency_jitter_s=0.02)
    assert all(0.1 <= draw_latency(fixed, rng) <= 0.12 for _ in range(100))
    assert draw_latency(MockServerConfig(latency_dist="lognormal"), rng) == 0.0


# --- counters -------------------------------------------------------------------------------


def admit(state: MockState, now: float, content: str = "q") -> str:
    verdict = state.admit(
        now=now,
        method="POST",
        path="/v1/chat/completions",
        headers={},
        body={"messages": [{"content": content}]},
        wire_bytes=10,
        conn_id=1,
        fixed_kind=None,
        content=content,
        directives=NO_DIRECTIVES,
    )
    state.finished()
    return verdict.kind


def test_state_counts_outcomes_per_phase_and_keeps_arrivals() -> None:
    config = MockServerConfig(phases=(Storm(1, 1),), max_arrivals=3)
    state = MockState(config)
    kinds = [admit(state, t) for t in (10.0, 10.5, 11.0, 11.5, 12.0)]
    assert kinds == ["ok", "ok", STORM, STORM, "ok"]
    state.connections_reset("storm", 2)
    stats = state.snapshot()
    assert stats.phases == {NORMAL: {"ok": 3}, "storm": {STORM: 2, "connections_reset": 2}}
    assert stats.timeline_started_at is not None
    assert [kind for _, kind in state.arrivals()] == [STORM, STORM, "ok"]  # the last 3
    stamps = [t for t, _ in state.arrivals()]
    assert stamps == sorted(stamps) and stamps[0] >= stats.timeline_started_at
    assert type(stats).from_dict(stats.as_dict()) == stats
    state.reset()
    assert (state.snapshot().phases, state.arrivals()) == ({}, [])


# --- configuration and command line ---------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"latency_dist": "gamma"}, "latency_dist"),
        ({"latency_sigma": -1.0}, "latency_sigma"),
        ({"capacity_mode": "drop"}, "capacity_mode"),
        ({"rate_limit_per_s": 0.0}, "rate_limit_per_s"),
        ({"burst": 5}, "need rate_limit_per_s"),
        ({"rate_limit_per_s": 5.0, "burst": 0}, "burst"),
        ({"rate_limit_per_s": 5.0, "token_burst": 5}, "token_burst needs"),
        ({"retry_after_style": "round"}, "retry_after_style"),
        ({"reset_style": "iso"}, "reset_style"),
        ({"fault_retry_after_s": -2.0}, "fault_retry_after_s"),
        ({"max_arrivals": -1}, "max_arrivals"),
        ({"phases": (Outage(0, 5), Storm(1, 1))}, "overlap"),
        ({"phases": ("storm",)}, "Outage and Storm"),
    ],
)
def test_config_names_each_bad_new_setting(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MockServerConfig(**kw)


def test_every_new_setting_survives_the_command_line() -> None:
    config = MockServerConfig(
        port=0,
        latency_s=0.1,
        latency_dist="lognormal",
        latency_sigma=0.3,
        capacity=32,
        capacity_mode="queue",
        retry_after_s=None,
        rate_limit_per_s=200.0,
        burst=20,
        token_rate_per_s=5000.0,
        token_burst=9000,
        rate_headers=False,
        retry_after_style="exact",
        reset_style="seconds",
        fault_rates={"503": 0.02, "hang": 0.01},
        fault_retry_after_s=1.5,
        phases=(Outage(2, 20, "blackhole"), Storm(30, 30, 503, None), Outage(70, 5)),
        seed=None,
        max_arrivals=1000,
    )
    args = build_parser().parse_args(config_to_argv(config))
    assert config_from_args(args) == config
    assert config_from_args(build_parser().parse_args([])).rate_headers is True


def test_help_lists_every_fault_kind_and_the_phases(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    for word in ("reset", "hang", "malformed", "cut", "null", "nochoices", "HTTP status"):
        assert word in text
    for flag in ("--outage", "--storm", "--rate-limit", "--capacity-mode", "--latency-dist"):
        assert flag in text
