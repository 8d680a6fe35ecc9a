"""``minimallm demo``: a batch against the built-in mock endpoint, no key, no network.

The mock runs in a background thread with realistic latency and a few injected 429s
and 500s, so the heartbeat, the retries and the cooldown are all visible.
"""

from __future__ import annotations

import sys
import time

import trio

from minimallm._backend import OpenAIMinimaLlm
from minimallm._config import BatchConfig, MinimaLlmConfig
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


def run_demo(
    n: int = 3000, *, latency_s: float = 0.08, jitter_s: float = 0.12, seed: int = 7
) -> int:
    """Run the demo batch; returns a process exit code."""
    from minimallm.mock import MockServerConfig, MockServerThread

    mock_cfg = MockServerConfig(
        latency_s=latency_s,
        latency_jitter_s=jitter_s,
        fault_rates={"429": 0.001, "500": 0.01},
        retry_after_s=0.5,
        seed=seed,
    )
    with MockServerThread(mock_cfg) as mock:
        cfg = MinimaLlmConfig(
            base_url=mock.base_url,
            model="mock-model",
            max_outstanding=64,
            rpm=0,
            base_backoff_s=0.2,
            max_backoff_s=2.0,
            cooldown_cap_s=2.0,
            cooldown_halflife_s=5.0,
            batch=BatchConfig(num_workers=64, heartbeat_s=1.0, max_failures=50),
        )
        print(
            f"minimallm demo: {n} requests against the built-in mock endpoint at {mock.base_url}\n"
            f"(latency {latency_s * 1000:.0f}-{(latency_s + jitter_s) * 1000:.0f} ms, "
            f"0.1% 429 with Retry-After, 1% 500; progress on stderr)",
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
        first = results[0]
        print(f"{ok}/{n} answered in {elapsed:.1f}s ({n / elapsed:.0f} requests/s)")
        if isinstance(first, MinimaLlmResponse):
            print(f"first answer: {first.request_id} -> {first.text!r}")
        return 0 if ok == n else 1
