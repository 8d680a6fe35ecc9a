"""Flow control against servers that push back, in virtual time (whole backends, the
fake servers of ``pushback.py``): what the issue's benchmarks measure over real
sockets, here exact and fast."""

from __future__ import annotations

import bisect
import io
import random

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script
from minimallm import (
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._runtime.serve import RuntimeOptions
from pushback import (
    CapacityServer,
    FaultServer,
    OutageServer,
    StormServer,
    TokenBucketServer,
    run_virtual_batch,
)


def test_token_bucket_with_headers_goodput_and_few_429s() -> None:
    server = TokenBucketServer(rate=200.0, burst=20)
    results, wall = run_virtual_batch(
        server,
        4000,
        max_outstanding=128,
        max_attempts=10,
        batch=BatchConfig(num_workers=128, heartbeat_s=0, max_failures=None),
    )
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    goodput = 4000 / wall
    assert goodput >= 0.95 * 200
    assert server.outcomes("429") <= 0.05 * 4000


@pytest.mark.parametrize(
    ("manners", "most_429s"), [("headers", 0.05), ("retry-after", 0.05), ("bare", 0.10)]
)
def test_a_token_bucket_is_learned_as_a_rate_whatever_it_says(
    manners: str, most_429s: float
) -> None:
    # issue 16's benchmark rows in virtual time: 200/s, burst 20, 100 ms answers, 4,000
    # requests, 128 outstanding (and 256 requests in the batch at once, the defaults'
    # ratio), the bucket telling its rate in headers, only a whole-second Retry-After,
    # or nothing. A refused request's attempt frees its permit within a millisecond, so
    # no concurrency limit bounds the sends: only a learned rate stops the refusals
    server = TokenBucketServer(rate=200.0, burst=20, latency=0.1, manners=manners)
    results, wall = run_virtual_batch(
        server,
        4000,
        max_outstanding=128,
        max_attempts=10,
        timeout_s=10.0,
        batch=BatchConfig(num_workers=256, heartbeat_s=0, max_failures=None),
    )
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert 4000 / wall >= 0.95 * 200, wall
    assert server.outcomes("429") <= most_429s * 4000, server.outcomes("429")
    # refused requests re-enter paced: no second holds a herd of sends
    sends = sorted(t for t, _ in server.log)
    busiest = max(bisect.bisect_left(sends, t + 1.0) - i for i, t in enumerate(sends))
    assert busiest <= 200 + 20 + 128, busiest


def test_a_server_with_32_slots_is_kept_full() -> None:
    server = CapacityServer(slots=32, median=0.1, sigma=0.5)
    results, wall = run_virtual_batch(
        server,
        3000,
        max_outstanding=64,
        max_attempts=10,
        batch=BatchConfig(num_workers=64, heartbeat_s=0, max_failures=None),
    )
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    ideal = server.service_s / 32  # every slot busy throughout
    assert ideal / wall >= 0.95
    assert server.outcomes("429") <= 100


def test_random_faults_cost_only_the_requests_they_hit() -> None:
    server = FaultServer(latency=0.1)
    results, wall = run_virtual_batch(  # NUM_WORKERS = 2 x MAX_OUTSTANDING, as the defaults
        server,
        3000,
        max_outstanding=64,
        timeout_s=2.0,
        batch=BatchConfig(num_workers=128, heartbeat_s=0, max_failures=None),
    )
    failures = [r for r in results if isinstance(r, MinimaLlmFailure)]
    assert failures == []
    # while the batch is in full swing the server sees 64 requests at a time, less the
    # few hung ones (1 % of attempts, 2 s each): a fault is never taken for overload,
    # and nobody pauses for it (64 / 0.1 s = 640 attempts a second)
    sent = [t for t, _ in server.log]
    steady = (bisect.bisect_left(sorted(sent), 5.0) - bisect.bisect_left(sorted(sent), 1.0)) / 4
    assert steady >= 0.8 * 640
    # 3237 attempts at 64 x 0.1 s take 5.1 s; then the stragglers: an item hung at the
    # end waits its 2 s timeout and a backoff, perhaps twice, rarely three times (the
    # order in which trio wakes tasks varies between processes: 8.5-9.3 s in 6 runs,
    # 11.5 s seen once)
    assert wall < 12.5


def test_after_a_30_s_storm_throughput_is_back_within_10_s() -> None:
    server = StormServer(latency=0.1, start=5.0, end=35.0)
    results, _wall = run_virtual_batch(
        server,
        12000,
        max_outstanding=64,
        max_attempts=0,
        batch=BatchConfig(num_workers=64, heartbeat_s=0, max_failures=None),
    )
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    oks = sorted(t for t, kind in server.log if kind == "ok")
    before = bisect.bisect_left(oks, 5.0) - bisect.bisect_left(oks, 3.0)  # per 2 s, healthy
    recovered = None
    t = 35.0
    while t < 60.0:
        if bisect.bisect_left(oks, t + 2.0) - bisect.bisect_left(oks, t) >= 0.9 * before:
            recovered = t
            break
        t += 0.5
    # the issue asks for 10 s; slow start back to the episode's ssthresh makes it 4
    assert recovered is not None and recovered - 35.0 <= 5.0
    storm = [t for t, kind in server.log if kind == "429"]
    assert len(storm) < 400  # a few probes a second, not a storm of our own


def test_a_20_s_outage_costs_no_request_with_the_default_attempts() -> None:
    server = OutageServer(latency=0.1, start=5.0, end=25.0)
    results, _wall = run_virtual_batch(server, 3000, max_outstanding=32)  # MAX_ATTEMPTS 6
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    refused = [t for t, kind in server.log if kind == "refused"]
    assert len(refused) < 200  # one probe at a time, not every request's six attempts
    # probes at most 2 s apart: the server's return is noticed within 2 s
    back = min(t for t, kind in server.log if kind == "ok" and t >= 25.0)
    assert back <= 25.0 + 2.0 + 0.1


def test_pacing_at_rpm_3000_holds_50_a_second_with_no_burst() -> None:
    server = FakeServer(lambda c, n: Script(latency=0.05))
    _results, _wall = run_virtual_batch(server, 1000, rpm=3000, max_outstanding=32)
    sends = sorted(s.start for s in server.sent)
    rate = (len(sends) - 1) / (sends[-1] - sends[0])
    assert rate >= 0.99 * 50
    for i, start in enumerate(sends):
        assert bisect.bisect_left(sends, start + 1.0) - i <= 51
        assert bisect.bisect_left(sends, start + 60.0) - i <= 3000


def test_progress_lines_of_a_throttled_run_name_what_holds_it_back() -> None:
    server = FakeServer(lambda c, n: Script(latency=0.05))
    lines = io.StringIO()

    async def main() -> None:
        cfg = MinimaLlmConfig(
            base_url="http://fake.invalid",
            model="m",
            rpm=60,
            max_outstanding=8,
            batch=BatchConfig(num_workers=8, heartbeat_s=5.0),
        )
        backend = OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))
        reqs = [
            MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"q{i}"}]) for i in range(12)
        ]
        async with backend:
            await backend.run_batched(reqs, progress=lines)

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    text = lines.getvalue().splitlines()
    assert text[:2] == [
        "[minimallm] 0:00:05 5/12 41.7% | 1.0/s | ETA 0:00:07",
        "[minimallm]   held back by RPM cap 60/min | server 0.05s | waited 2.00s | 1.0/s HTTP",
    ]


def test_paced_requests_go_out_in_the_order_they_came() -> None:
    # trio runs a wave of woken tasks in either order (at random): the Pacer must not
    # grant by who asked first, or a low RPM delays the first answer by a whole wave
    for _ in range(8):
        server = FakeServer(lambda c, n: Script(latency=0.05))
        run_virtual_batch(server, 24, rpm=1200, max_outstanding=8, batch=BatchConfig(num_workers=8))
        assert [s.content for s in server.sent] == [f"q{i}" for i in range(24)]
