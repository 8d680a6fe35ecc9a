"""Several replicas of one model: minimallm (``OPENAI_BASE_URL=a,b,c``) next to a
round-robin aiohttp loop, in the same run.

Three ``minimallm mock`` processes of 8, 16 and 32 slots (429 with Retry-After: 1
above), 100 ms lognormal latency (sigma 0.5); 6,000 requests. Two scenarios, each with
fresh mocks per client: ``healthy``, and ``outage``: replica 2 (16 slots) refuses
connections for 20 s from ``--outage-start`` seconds after its first request. Reported
per client: wall, throughput against the sum of capacities (56 slots / the mean
latency, 0.113 s: ~494 requests/s), failures, 429s, and each replica's share of the
answered requests next to its share of the capacity (8/56, 16/56, 32/56); the 429s
are split into those of the first ``EARLY_S`` seconds (the first burst, before any
replica's limit is learned) and the rest (steady state).

The peer: 56 asyncio tasks (the sum of the capacities, which it is told), each
request sent to the next replica in turn; a failed attempt (429, 5xx, a refused
connection, a timeout) is retried on the next replica after the server's Retry-After
or minimallm's default backoff, up to 6 attempts (minimallm's default).
LiteLLM's Router is not installed here (the project does not depend on it).

Run: ``python -m benchmarks.bench_replicas [--requests 6000] [--outage-start 3]
[--no-outage] [--no-peer] [--runs 1]``.
Noisy on a shared machine: compare the two clients of one run, not runs.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import itertools
import json
import math
import random
import time
from collections.abc import Sequence
from typing import Any

import aiohttp
import trio

from benchmarks.clients.aiohttp_retry import retry_after_s
from minimallm import (
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm.mock import MockServerConfig, Outage
from minimallm.mock.runners import MockServerProcess

SLOTS = (8, 16, 32)
MEDIAN_S = 0.1
SIGMA = 0.5
MEAN_S = MEDIAN_S * math.exp(SIGMA**2 / 2)
OUTAGE_S = 20.0
DOWN = 1  # replica 2 (0-based 1) goes down in the outage scenario
MAX_ATTEMPTS = 6
EARLY_S = 2.0  # refusals counted as the first burst's


def _mocks(outage_start: float | None) -> list[MockServerProcess]:
    mocks = []
    for i, slots in enumerate(SLOTS):
        phases: tuple[Any, ...] = ()
        if outage_start is not None and i == DOWN:
            phases = (Outage(outage_start, OUTAGE_S, "refuse"),)
        config = MockServerConfig(
            latency_s=MEDIAN_S,
            latency_dist="lognormal",
            latency_sigma=SIGMA,
            capacity=slots,
            capacity_mode="429",
            retry_after_s=1.0,
            phases=phases,
            seed=i,
            max_arrivals=100_000,
        )
        mocks.append(MockServerProcess(config).start())
    return mocks


def _prompts(n: int) -> list[str]:
    return [f"replicas {i}" for i in range(n)]


def run_minimallm(urls: Sequence[str], prompts: Sequence[str]) -> tuple[float, int]:
    cfg = MinimaLlmConfig(
        base_url=list(urls),
        model="mock-model",
        rpm=0,
        max_outstanding=32,
        max_attempts=MAX_ATTEMPTS,
        batch=BatchConfig(num_workers=256, heartbeat_s=0, max_failures=None),
    )
    reqs = [
        MinimaLlmRequest(f"r{i}", [{"role": "user", "content": p}]) for i, p in enumerate(prompts)
    ]
    out: dict[str, Any] = {}

    async def main() -> None:
        async with OpenAIMinimaLlm(cfg) as backend:
            start = time.perf_counter()
            results = await backend.run_batched(reqs, progress=io.StringIO())
            out["wall"] = time.perf_counter() - start
            failures = [r for r in results if not isinstance(r, MinimaLlmResponse)]
            out["failed"] = len(failures)
            for f in failures[:3]:
                print(f"  minimallm failure: {f}", flush=True)

    trio.run(main)
    return out["wall"], out["failed"]


def run_round_robin(urls: Sequence[str], prompts: Sequence[str]) -> tuple[float, int]:
    targets = [u.rstrip("/") + "/chat/completions" for u in urls]

    async def main() -> tuple[float, int]:
        turn = itertools.cycle(range(len(targets)))
        queue = list(reversed(prompts))
        failed = 0
        rng = random.Random(0)
        timeout = aiohttp.ClientTimeout(total=60)
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:

            async def one(prompt: str) -> bool:
                body = {"model": "mock-model", "messages": [{"role": "user", "content": prompt}]}
                for attempt in range(1, MAX_ATTEMPTS + 1):
                    url = targets[next(turn)]
                    wait: float | None = None
                    try:
                        async with session.post(url, json=body) as reply:
                            data = await reply.read()
                            if reply.status == 200 and b"choices" in data:
                                json.loads(data)
                                return True
                            wait = retry_after_s(reply.headers)
                    except (TimeoutError, aiohttp.ClientError, ValueError):
                        pass
                    if attempt < MAX_ATTEMPTS:
                        if wait is None:
                            wait = min(20.0, 0.5 * 2 ** (attempt - 1)) * rng.uniform(0.8, 1.2)
                        await asyncio.sleep(wait)
                return False

            async def worker() -> None:
                nonlocal failed
                while queue:
                    if not await one(queue.pop()):
                        failed += 1

            start = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(sum(SLOTS))))
            return time.perf_counter() - start, failed

    return asyncio.run(main())


def _stats(mock: MockServerProcess) -> Any:
    """The mock's counters; a replica still in its outage refuses the stats request
    too: wait for its return."""
    deadline = time.monotonic() + OUTAGE_S + 10.0
    while True:
        try:
            return mock.stats
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _refusals_by_phase(mocks: list[MockServerProcess]) -> tuple[int, int]:
    """429s in the first EARLY_S seconds (from the first arrival anywhere), and later."""
    arrivals = [a for m in mocks for a in m.arrivals()]
    if not arrivals:
        return 0, 0
    start = min(t for t, _ in arrivals)
    refused = [t for t, kind in arrivals if kind in ("capacity", "429")]
    early = sum(1 for t in refused if t < start + EARLY_S)
    return early, len(refused) - early


def _report(name: str, scenario: str, wall: float, failed: int, mocks: list[Any], n: int) -> str:
    stats = [_stats(m) for m in mocks]
    oks = [s.outcomes.get("ok", 0) for s in stats]
    refusals = sum(v for s in stats for k, v in s.outcomes.items() if k in ("capacity", "429"))
    early, later = _refusals_by_phase(mocks)
    total = max(1, sum(oks))
    ideal = sum(SLOTS) / MEAN_S
    shares = ", ".join(
        f"r{i + 1} {ok / total:.1%} (cap {slots / sum(SLOTS):.1%})"
        for i, (ok, slots) in enumerate(zip(oks, SLOTS, strict=True))
    )
    return (
        f"| {scenario} | {name} | {wall:.1f} | {n / wall:.0f} | {n / wall / ideal:.2f} | "
        f"{failed} | {refusals} ({early} + {later}) | {shares} | {dict(stats[DOWN].outcomes)} |"
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--outage-start", type=float, default=3.0)
    parser.add_argument("--no-outage", action="store_true", help="the healthy scenario only")
    parser.add_argument("--no-peer", action="store_true", help="minimallm only")
    parser.add_argument("--runs", type=int, default=1, help="repeat each scenario")
    args = parser.parse_args(argv)
    prompts = _prompts(args.requests)
    print(f"3 replicas {SLOTS} slots, {MEDIAN_S * 1000:.0f} ms lognormal, {args.requests} requests")
    print(f"sum of capacities: {sum(SLOTS) / MEAN_S:.0f} requests/s")
    print(
        "| scenario | client | wall s | req/s | of capacity | failed | "
        f"429s (first {EARLY_S:g} s + later) | shares of answers | replica 2 outcomes |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    scenarios: list[tuple[str, float | None]] = [("healthy", None)]
    if not args.no_outage:
        scenarios.append(("outage", args.outage_start))
    clients = [("minimallm", run_minimallm), ("round-robin aiohttp", run_round_robin)]
    if args.no_peer:
        clients = clients[:1]
    for scenario, start in [s for s in scenarios for _ in range(args.runs)]:
        for name, run in clients:
            mocks = _mocks(start)
            try:
                wall, failed = run([m.base_url for m in mocks], prompts)
                print(_report(name, scenario, wall, failed, mocks, args.requests), flush=True)
            finally:
                for m in mocks:
                    m.stop()


if __name__ == "__main__":
    main()
