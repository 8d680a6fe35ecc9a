"""The mock's manners for the gateway benchmarks: Retry-After-only rate limits, extra
headers on every answer (daily budgets, garbage), error codes such as
insufficient_quota; settings survive the command line; end to end on loopback."""

from __future__ import annotations

import json
import random

import httpx
import pytest

from minimallm import ConfigError
from minimallm.mock import MockServerConfig, MockServerThread, Storm
from minimallm.mock.cli import build_parser, config_from_args, config_to_argv
from minimallm.mock.decide import RATELIMIT, REFUSED, WINDOW, Decider
from minimallm.mock.faults import NO_DIRECTIVES
from minimallm.mock.ratelimit import RateLimiter

DAILY = (
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-remaining-requests", "9990"),
    ("x-ratelimit-reset-requests", "23h59m0s"),
)


def test_retry_after_only_refusals_say_when_and_nothing_else() -> None:
    limiter = RateLimiter(rate_per_s=10.0, burst=1, now=0.0, retry_after_only=True)
    ok, refused = limiter.check(0, 0.0), limiter.check(0, 0.0)
    assert ok.allowed and ok.headers == ()
    assert not refused.allowed and refused.headers == (("retry-after", "1"),)


def test_extra_headers_come_first_on_answers_and_refusals() -> None:
    config = MockServerConfig(
        rate_limit_per_s=1.0, burst=1, rate_headers=False, extra_headers=DAILY
    )
    decider = Decider(config, random.Random(0))

    def decide(now: float):  # type: ignore[no-untyped-def]
        return decider.decide(now=now, in_flight=1, body=None, content="", directives=NO_DIRECTIVES)

    ok, refused = decide(0.0), decide(0.1)
    assert ok.kind == "ok" and ok.headers == DAILY
    assert refused.kind == RATELIMIT and refused.headers == DAILY


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"extra_headers": (("x-a", "b\r\nc"),)}, "extra_headers"),
        ({"extra_headers": (("x-a",),)}, "extra_headers"),
        ({"error_code": ""}, "error_code"),
    ],
)
def test_bad_manners_are_named(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        MockServerConfig(**kw)  # type: ignore[arg-type]


def test_manners_survive_the_command_line() -> None:
    config = MockServerConfig(
        rate_limit_per_s=200.0,
        burst=20,
        retry_after_only=True,
        extra_headers=(*DAILY, ("x-ratelimit-reset-tokens", "1h1h1h")),
        error_code="insufficient_quota",
    )
    assert config_from_args(build_parser().parse_args(config_to_argv(config))) == config
    defaults = config_from_args(build_parser().parse_args([]))
    assert (defaults.retry_after_only, defaults.extra_headers, defaults.error_code) == (
        False, (), None,
    )  # fmt: skip


def test_help_documents_the_manners(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "--retry-after-only" in out and "--header" in out and "--error-code" in out


def test_an_account_out_of_credit_on_loopback() -> None:
    config = MockServerConfig(
        phases=(Storm(0, 3600, 429, None),), error_code="insufficient_quota", extra_headers=DAILY
    )
    with MockServerThread(config) as mock:
        body = {"model": "m", "messages": [{"role": "user", "content": "hi"}]}
        r = httpx.post(mock.base_url + "/chat/completions", json=body)
    assert r.status_code == 429
    assert json.loads(r.text)["error"]["code"] == "insufficient_quota"
    assert json.loads(r.text)["error"]["type"] == "insufficient_quota"
    assert r.headers["x-ratelimit-reset-requests"] == "23h59m0s"
    assert "retry-after" not in r.headers


def _decide(decider: Decider, now: float):  # type: ignore[no-untyped-def]
    return decider.decide(now=now, in_flight=1, body=None, content="", directives=NO_DIRECTIVES)


def test_every_other_request_is_refused_whatever_the_load() -> None:
    decider = Decider(MockServerConfig(refuse_every=2), random.Random(0))
    kinds = [_decide(decider, i * 10.0).kind for i in range(6)]
    assert kinds == ["ok", REFUSED] * 3
    assert _decide(decider, 100.0).headers == ()


def test_calendar_window_limit_refuses_until_the_next_window_litellm_style() -> None:
    decider = Decider(MockServerConfig(window_limit=2, window_s=60.0), random.Random(0))
    assert [_decide(decider, t).kind for t in (58.0, 59.0)] == ["ok", "ok"]
    refused = _decide(decider, 59.5)
    assert refused.kind == WINDOW and refused.status == 429
    assert refused.headers == (("llm_provider-retry-after", "1"),)
    assert _decide(decider, 60.0).kind == "ok"  # a new calendar window, full again
    assert _decide(decider, 61.0).kind == "ok"
    assert _decide(decider, 62.0).headers == (("llm_provider-retry-after", "58"),)


def test_window_and_refusal_settings_are_checked_and_cross_the_command_line() -> None:
    for kw in ({"refuse_every": 1}, {"window_limit": 0}, {"window_s": 0.0}):
        with pytest.raises(ConfigError, match=next(iter(kw))):
            MockServerConfig(**kw)  # type: ignore[arg-type]
    config = MockServerConfig(refuse_every=2, window_limit=100, window_s=10.0)
    assert config_from_args(build_parser().parse_args(config_to_argv(config))) == config
