"""``minimallm demo``: a batch against the built-in mock endpoint, no key, no network.

The mock is a server that pushes back the way real ones do: fewer slots than the client
may use (429 with ``Retry-After: 1`` above them), lognormal latency, a few percent of
503s, 500s and reset connections, and a short outage in the middle of the batch. The
client keeps every default except MAX_OUTSTANDING (64, more than the server's slots)
and RPM (off), so the progress lines show what minimallm learns and what binds it.
"""

from __future__ import annotations

import sys
import time

import trio

from minimallm._backend import OpenAIMinimaLlm
from minimallm._config.settings import BatchConfig, MinimaLlmConfig
from minimallm._errors import BatchAbortedError
from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse

__all__ = ["run_demo"]

TOPICS = ("tides", "volcanoes", "the printing press", "honeybees", "glaciers", "compilers")


def demo_requests(n: int) -> list[MinimaLlmRequest]:
    """``n`` small judging prompts, one per item."""
    return [
        MinimaLlmRequest(
            request_id=f"demo-{i}",
            messages=[
                {"role": "system", "content": "You grade passages for relevance from 0 to 3."},
                {
                    "role": "user",
                    "content": f"Item {i}: is this passage about {TOPICS[i % len(TOPICS)]}?",
                },
            ],
            temperature=0.0,
            max_tokens=32,
        )
        for i in range(n)
    ]


SLOTS = 24
"""The server's slots (requests it works on at once); MAX_OUTSTANDING is 64."""
FAULTS = {"503": 0.02, "500": 0.01, "reset": 0.005}
OUTAGE_AT_S, OUTAGE_S = 6.0, 4.0
"""Connections refused from 6 s after the first request, for 4 s."""


def run_demo(n: int = 3000, *, latency_s: float = 0.1, seed: int = 7) -> int:
    """Run the demo batch; returns a process exit code."""
    from minimallm.mock import MockServerConfig, MockServerThread, Outage

    mock_cfg = MockServerConfig(
        latency_s=latency_s,
        latency_dist="lognormal",
        capacity=SLOTS,
        capacity_mode="429",
        retry_after_s=1.0,
        fault_rates=FAULTS,
        phases=(Outage(OUTAGE_AT_S, OUTAGE_S, "refuse"),),
        seed=seed,
    )
    with MockServerThread(mock_cfg) as mock:
        cfg = MinimaLlmConfig(
            base_url=mock.base_url,
            model="mock-model",
            max_outstanding=64,
            rpm=0,
            batch=BatchConfig(heartbeat_s=2.0),
        )
        faults = ", ".join(f"{rate:.1%} {kind}" for kind, rate in FAULTS.items())
        print(
            f"minimallm demo: {n} requests to the built-in mock at {mock.base_url}\n"
            f"server: {SLOTS} slots (429 + Retry-After: 1 above them), ~{latency_s * 1000:.0f} ms"
            f" lognormal latency,\n        {faults}; refuses connections for {OUTAGE_S:g} s"
            f" from {OUTAGE_AT_S:g} s\n"
            f"client: MAX_OUTSTANDING 64, RPM off, every other setting at its default\n"
            f"(progress on stderr)",
            flush=True,
        )
        backend = OpenAIMinimaLlm(cfg)
        start = time.perf_counter()

        async def main() -> list[MinimaLlmResponse | MinimaLlmFailure]:
            async with backend:
                return await backend.run_batched(demo_requests(n))

        try:
            results = trio.run(main)
        except BatchAbortedError as exc:
            print(f"demo aborted: {exc}", file=sys.stderr)
            return 1
        elapsed = time.perf_counter() - start
        ok = sum(isinstance(r, MinimaLlmResponse) for r in results)
        stats = mock.server.stats
        seen = ", ".join(f"{count} {kind}" for kind, count in sorted(stats.outcomes.items()))
        print(f"{ok}/{n} answered in {elapsed:.1f}s ({n / elapsed:.0f} requests/s)")
        print(f"the server saw {stats.requests_total} requests: {seen}")
        first = results[0]
        if isinstance(first, MinimaLlmResponse):
            print(f"first answer: {first.request_id} -> {first.text!r}")
        return 0 if ok == n else 1
