"""Waits that are visible and bounded, refusals that are signals (issue 16), in virtual
time against fake servers: a server asking for a day, a server refusing half of all
requests whatever the load, a daily budget in the rate headers."""

from __future__ import annotations

import bisect
import io
import itertools
import re
import warnings
from typing import Any

import pytest

from fakes import FakeServer, Script
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    MinimaLlmFailure,
    MinimaLlmResponse,
)
from minimallm._errors import ServerWaitWarning
from pushback import CapacityServer, DeadUpstreamServer, RefusingServer, run_virtual_batch

REFUSED = b'{"error": {"message": "rate limit"}}'


def test_retry_after_a_day_on_everything_ends_the_batch_at_once_naming_the_wait() -> None:
    server = FakeServer(
        lambda c, n: Script(
            latency=0.01, status=429, body=REFUSED, headers={"retry-after": "86400"}
        )
    )
    outcome, wall = run_virtual_batch(server, 20, batch=BatchConfig(heartbeat_s=0))
    assert isinstance(outcome, BatchAbortedError)
    assert wall < 30.0
    message = str(outcome)
    assert message.startswith("Aborting batch: 5 failures: every request failed: HTTP 429")
    assert "24 h (Retry-After)" in message and "MAX_WAIT_S=300s" in message


def test_a_request_asked_to_wait_longer_than_max_wait_fails_naming_the_wait() -> None:
    server = FakeServer(
        lambda c, n: Script(latency=0.01, status=503, body=REFUSED, headers={"retry-after": "900"})
    )
    results, wall = run_virtual_batch(server, 1)
    assert isinstance(results, list)
    (failure,) = results
    assert isinstance(failure, MinimaLlmFailure)
    assert failure.status == 503 and failure.attempts == 1
    assert "15 min (Retry-After), longer than MAX_WAIT_S=300s" in failure.message
    assert wall < 1.0


def test_a_retry_after_beyond_the_cap_is_reported_once_and_bounded_by_max_wait() -> None:
    server = FakeServer(
        lambda c, n: Script(latency=0.01, status=429, body=REFUSED, headers={"retry-after": "120"})
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results, wall = run_virtual_batch(server, 3, max_wait_s=200.0)
    assert isinstance(results, list)
    assert all(isinstance(r, MinimaLlmFailure) for r in results)
    assert all("refused for longer than MAX_WAIT_S=200s" in r.message for r in results)
    long_waits = [w for w in caught if issubclass(w.category, ServerWaitWarning)]
    assert len(long_waits) == 1
    assert "2 min (Retry-After), longer than COOLDOWN_CAP_S=30s" in str(long_waits[0].message)
    # a request gives up when its next attempt would go out past MAX_WAIT_S; one that
    # waits in the shared pause's queue for a probe slot is late by that queue (known)
    assert 170.0 <= wall <= 200.0 + 2 * 30.0 + 1.0


def test_refusals_do_not_spend_max_attempts_while_the_server_answers_others() -> None:
    # every request is refused five times before it is served: with MAX_ATTEMPTS 3 it
    # still succeeds (refusals are bounded by MAX_WAIT_S, not by attempts)
    server = FakeServer(
        lambda c, n: (
            Script(latency=0.01, status=429, body=REFUSED) if n < 5 else Script(latency=0.01)
        )
    )
    results, _wall = run_virtual_batch(server, 10, max_attempts=3)
    assert isinstance(results, list)
    assert all(isinstance(r, MinimaLlmResponse) for r in results)


def test_failures_other_than_refusals_still_count_against_max_attempts() -> None:
    server = FakeServer(lambda c, n: Script(latency=0.01, status=500, body=REFUSED))
    results, _wall = run_virtual_batch(server, 2, max_attempts=3)
    assert isinstance(results, list)
    assert [r.attempts for r in results if isinstance(r, MinimaLlmFailure)] == [3, 3]


@pytest.mark.parametrize("header", ["retry-after", "llm_provider-retry-after"])
def test_a_gateway_forwarded_retry_after_is_honoured(header: str) -> None:
    server = FakeServer(
        lambda c, n: (
            Script(latency=0.0, status=429, body=REFUSED, headers={header: "7"})
            if n == 0
            else Script(latency=0.0)
        )
    )
    results, _wall = run_virtual_batch(server, 1, jitter=0.0)
    assert isinstance(results, list) and isinstance(results[0], MinimaLlmResponse)
    first, second = (s.start for s in server.sent)
    assert second - first == pytest.approx(7.0, abs=1e-3)


def test_a_daily_budget_in_the_headers_is_spent_at_full_speed() -> None:
    used = {"n": 0}

    def script(content: str, n: int) -> Script:
        used["n"] += 1
        headers = {
            "x-ratelimit-limit-requests": "10000",
            "x-ratelimit-remaining-requests": str(10_000 - used["n"]),
            "x-ratelimit-reset-requests": "23h59m",
        }
        return Script(latency=0.1, headers=headers)

    server = FakeServer(script)
    results, wall = run_virtual_batch(
        server, 2000, max_outstanding=32, batch=BatchConfig(num_workers=64, heartbeat_s=0)
    )
    assert isinstance(results, list)
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert wall <= 1.05 * 2000 * 0.1 / 32  # full speed: 32 at a time, no pacing


@pytest.mark.parametrize("reset", ["1h1h1h", "soon", "-5s"])
def test_garbage_rate_headers_are_ignored(reset: str) -> None:
    headers = {
        "x-ratelimit-limit-requests": "20",
        "x-ratelimit-remaining-requests": "3",
        "x-ratelimit-reset-requests": reset,
    }
    server = FakeServer(lambda c, n: Script(latency=0.1, headers=headers))
    results, wall = run_virtual_batch(server, 320, max_outstanding=32)
    assert isinstance(results, list)
    assert wall <= 1.05 * 320 * 0.1 / 32


@pytest.mark.parametrize(
    "manner", [{"share": 0.5}, {"alternate": True}, {"share": 0.2}, {"share": 0.3}]
)
def test_refusals_whatever_the_load_cost_no_request_and_little_time(
    manner: dict[str, Any],
) -> None:
    # backing off would not lower the refusals: flow control stops backing off.
    # Refusals come back in 1 ms, answers in 100 ms: 32 at a time serve 320 a second
    # at best; before, the 50 % server took 10,000 s (256 failures)
    server = RefusingServer(0.1, **manner)
    results, wall = run_virtual_batch(
        server, 2000, max_outstanding=32, batch=BatchConfig(num_workers=64, heartbeat_s=0)
    )
    assert isinstance(results, list)
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    assert 2000 / wall >= 80.0  # a semaphore + backoff loop: ~22 a second


@pytest.mark.parametrize(("down_s", "status"), [(10.0, 502), (40.0, 502), (10.0, 504), (10.0, 503)])
def test_a_gateways_dead_upstream_is_an_outage(down_s: float, status: int) -> None:
    # nginx answers 502 at once while its upstream is down: probes at most 2 s apart and
    # the first success within 2 s of the return (before: 3.9 s / 15.7 s, probes 14 s
    # apart after a 40 s outage, the pause doubling toward 30 s)
    start, end = 5.0, 5.0 + down_s
    server = DeadUpstreamServer(0.1, start, end, status)
    results, _wall = run_virtual_batch(
        server, 3000, max_outstanding=32, batch=BatchConfig(num_workers=64, heartbeat_s=0)
    )
    assert isinstance(results, list)
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    refused = sorted(t for t, kind in server.log if kind == str(status))
    probes = [t for t in refused if t >= start + 2.0]
    assert all(b - a <= 2.0 + 0.05 for a, b in itertools.pairwise(probes))
    oks = sorted(t for t, kind in server.log if kind == "ok")
    first = next(t for t in oks if t >= end)
    assert first - end <= 2.0
    before = bisect.bisect_left(oks, start) - bisect.bisect_left(oks, start - 2.0)
    t = end
    while bisect.bisect_left(oks, t + 2.0) - bisect.bisect_left(oks, t) < 0.9 * before:
        t += 0.25
    assert t - end <= 5.0  # 90 % of the throughput before, within 5 s


def test_a_server_with_few_slots_answering_bare_503s_is_no_outage() -> None:
    server = CapacityServer(slots=16, median=0.1, sigma=0.3, status=503, headers={})
    results, wall = run_virtual_batch(
        server, 2000, max_outstanding=32, batch=BatchConfig(num_workers=64, heartbeat_s=0)
    )
    assert isinstance(results, list)
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    assert server.service_s / 16 / wall >= 0.85


def test_a_long_pause_is_shown_with_what_the_server_asked() -> None:
    server = FakeServer(
        lambda c, n: Script(latency=0.01, status=429, body=REFUSED, headers={"retry-after": "120"})
    )
    lines = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ServerWaitWarning)
        run_virtual_batch(
            server, 20, progress=lines, batch=BatchConfig(heartbeat_s=10.0), max_wait_s=200
        )
    held = [line for line in lines.getvalue().splitlines() if "held back by cooldown" in line]
    assert held
    assert "server asked 2 min (Retry-After)" in held[0] and "(until " in held[0]


def test_retries_are_counted_as_they_happen_not_when_items_end() -> None:
    """Everything refused for minutes: the progress lines count the attempts sent again
    while nothing has finished (they said "retries 0" for 200 s)."""
    server = FakeServer(
        lambda c, n: Script(latency=0.01, status=429, body=REFUSED, headers={"retry-after": "20"})
    )
    lines = io.StringIO()
    run_virtual_batch(
        server, 20, progress=lines, batch=BatchConfig(heartbeat_s=10.0), max_wait_s=200
    )
    ticks = [line for line in lines.getvalue().splitlines() if " 0/20 " in line]
    retries = [int(m[1].replace(",", "")) for t in ticks if (m := re.search(r"retries (\S+)", t))]
    assert retries and retries[-1] >= 20  # every request was sent again at least once
    assert retries == sorted(retries)
