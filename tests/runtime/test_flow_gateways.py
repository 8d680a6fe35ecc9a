"""Rows of issue 16's table not tested elsewhere, in virtual time: nginx's ``limit_req``
(a leaky bucket, bare 429s) and ``limit_conn`` (a few slots, bare 429s), LiteLLM's rpm
limit per calendar window, and an account out of credit on every answer. The real
nginx families are benchmarks (``python -m benchmarks --family nginx-limit-req``)."""

from __future__ import annotations

import io
import itertools
import json
import math
import random

import pytest
import trio

from minimallm import BatchAbortedError, BatchConfig, MinimaLlmFailure, MinimaLlmResponse
from minimallm._http.reply import HttpReply
from pushback import REFUSAL_S, CapacityServer, _ok, _Recording, run_virtual_batch

BARE_429 = b"<html><head><title>429 Too Many Requests</title></head></html>"


class LimitReqServer(_Recording):
    """nginx ``limit_req rate=R r/s burst=B nodelay`` in front of a server with a
    lognormal latency (``median``, sigma 0.3): nginx's leaky bucket (``excess =
    max(0, excess - R * elapsed + 1)``, refused above ``B``, in whole milliseconds as
    ngx_http_limit_req_module counts), refusals 429 with no Retry-After and no rate
    headers."""

    def __init__(self, rate: float, burst: int, median: float, seed: int) -> None:
        super().__init__()
        self.rate, self.burst, self.median = rate, burst, median
        self.rng = random.Random(seed)
        self._excess = 0.0
        self._at = 0.0

    async def handle(self, body: bytes) -> HttpReply:
        now = math.floor(trio.current_time() * 1000) / 1000
        excess = max(0.0, self._excess - self.rate * (now - self._at) + 1.0)
        if excess > self.burst:
            self.log.append((now, "429"))
            await trio.sleep(REFUSAL_S)
            return HttpReply(429, {}, BARE_429)
        self._excess, self._at = excess, now
        self.log.append((now, "ok"))
        await trio.sleep(self.median * math.exp(self.rng.gauss(0.0, 0.3)))
        return HttpReply(200, {}, _ok(json.loads(body)["messages"][-1]["content"]))


class WindowServer(_Recording):
    """LiteLLM's rpm limit: ``limit`` requests per calendar window of ``window_s``
    (windows start at multiples of it); above it 429 with the seconds to the next window,
    rounded up, in ``llm_provider-retry-after`` and nothing else."""

    def __init__(self, limit: int, window_s: float, latency: float) -> None:
        super().__init__()
        self.limit, self.window_s, self.latency = limit, window_s, latency
        self._window = -1
        self._used = 0

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        window = math.floor(now / self.window_s)
        if window != self._window:
            self._window, self._used = window, 0
        if self._used >= self.limit:
            self.log.append((now, "429"))
            wait = (window + 1) * self.window_s - now
            await trio.sleep(REFUSAL_S)
            headers = {"llm_provider-retry-after": str(math.ceil(wait))}
            return HttpReply(429, headers, b'{"error": {"message": "rpm limit"}}')
        self._used += 1
        self.log.append((now, "ok"))
        await trio.sleep(self.latency)
        return HttpReply(200, {}, _ok(json.loads(body)["messages"][-1]["content"]))


PUSHBACK = BatchConfig(num_workers=256, heartbeat_s=0, max_failures=None)
"""The benchmarks' pushback families: 128 outstanding, run_batched with twice that."""


@pytest.mark.parametrize("seed", range(4))
def test_nginx_limit_req_100_per_s_no_failures_at_the_limit(seed: int) -> None:
    """Row 'nginx limit_req 100 r/s': no request fails because its attempts went to 429s
    while the server served others, and the goodput stays at the limit."""
    server = LimitReqServer(100.0, 20, 0.1, seed)
    results, wall = run_virtual_batch(
        server, 1000, max_outstanding=128, max_attempts=10, timeout_s=10.0, batch=PUSHBACK
    )
    assert isinstance(results, list)
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    assert 1000 / wall >= 0.95 * 100, wall


@pytest.mark.parametrize("seed", range(6))
def test_nginx_limit_conn_16_no_request_sits_in_a_backoff_while_the_server_is_idle(
    seed: int,
) -> None:
    """Row 'nginx limit_conn 16': above 16 requests at once, bare 429s; the slots stay
    busy to the end (no gap of a second without an attempt reaching the server)."""
    server = CapacityServer(16, median=0.1, sigma=0.3, seed=seed, headers={})
    results, wall = run_virtual_batch(
        server, 1600, max_outstanding=128, max_attempts=10, timeout_s=10.0, batch=PUSHBACK
    )
    assert isinstance(results, list)
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    arrivals = [t for t, _ in server.log]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert max(gaps) < 1.0, max(gaps)
    assert server.service_s / 16 / wall >= 0.85, wall


@pytest.mark.parametrize("seed", range(6))
def test_a_slot_server_is_never_learned_as_a_rate_with_more_items_than_max_outstanding(
    seed: int,
) -> None:
    """Row 'nginx limit_conn 16' with twice MAX_OUTSTANDING items in progress: the
    concurrency keeps probing one above the 16 slots, episode after episode (steps
    every few ms, a restore to the cap now and then), and no step may be read as a
    token bucket's: not a momentary dip of the latency's variation (sigma 0.3 is no
    steady latency), nor a refusal 'below' a level that never held (the cap restored,
    or survivors counted while their wave's refusals were still coming)."""
    server = CapacityServer(16, median=0.1, sigma=0.3, seed=seed, headers={})
    lines = io.StringIO()
    results, _wall = run_virtual_batch(
        server,
        1600,
        progress=lines,
        max_outstanding=128,
        max_attempts=10,
        timeout_s=10.0,
        batch=BatchConfig(num_workers=256, heartbeat_s=1.0, max_failures=None),
    )
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    assert "held back by server concurrency" in lines.getvalue()  # the lines do say it
    rate_lines = [line for line in lines.getvalue().splitlines() if "server rate" in line]
    assert rate_lines == [], rate_lines[:3]


def test_litellm_calendar_windows_are_used_as_they_reopen() -> None:
    """Row 'LiteLLM rpm limit': 100 per calendar window of 5 s; every window after the
    first is used from its start, none lost. The hint is whole seconds rounded up, so a
    retry may come up to a second after the window opened (the row saw 2.5 s)."""
    server = WindowServer(100, 5.0, 0.1)
    results, _wall = run_virtual_batch(
        server, 600, max_outstanding=64, batch=BatchConfig(num_workers=128, heartbeat_s=0)
    )
    assert isinstance(results, list)
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    first_ok: dict[int, float] = {}
    for t, kind in server.log:
        if kind == "ok":
            first_ok.setdefault(math.floor(t / 5.0), t)
    late = {w: t - w * 5.0 for w, t in first_ok.items() if w > 0 and t - w * 5.0 >= 1.0}
    assert late == {}, late


def test_insufficient_quota_on_every_answer_ends_the_batch_at_once_naming_it() -> None:
    """Row 'every answer 429 insufficient_quota': the batch ends within seconds (not
    after 1.5 h) with a message naming the quota."""

    class OutOfCredit(_Recording):
        async def handle(self, body: bytes) -> HttpReply:
            self.log.append((trio.current_time(), "429"))
            await trio.sleep(REFUSAL_S)
            error = {"message": "You exceeded your current quota", "type": "insufficient_quota",
                     "code": "insufficient_quota"}  # fmt: skip
            return HttpReply(429, {}, json.dumps({"error": error}).encode())

    server = OutOfCredit()
    outcome, wall = run_virtual_batch(server, 200, batch=BatchConfig(heartbeat_s=0))
    assert isinstance(outcome, BatchAbortedError)
    assert wall < 30.0, wall
    assert "quota" in str(outcome)
    assert len(server.log) <= 64  # not 70 attempts over 6 minutes, nor one per request
