"""Batch invariants for random sizes, latencies, failures and limits (virtual time)."""

from __future__ import annotations

import random

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import FakeServer, Script
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._runtime import RuntimeOptions


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(0, 80),
    num_workers=st.integers(1, 12),
    max_outstanding=st.integers(1, 12),
    max_failures=st.one_of(st.none(), st.integers(0, 10)),
    seed=st.integers(0, 2**16),
    fail_rate=st.sampled_from([0.0, 0.05, 0.3]),
)
def test_batch_invariants(
    n: int,
    num_workers: int,
    max_outstanding: int,
    max_failures: int | None,
    seed: int,
    fail_rate: float,
) -> None:
    rnd = random.Random(seed)
    plan = {
        f"p{i}": (
            rnd.uniform(0.0, 3.0),
            rnd.choice([400, 500]) if rnd.random() < fail_rate else 200,
        )
        for i in range(n)
    }

    def script(content: str, attempt: int) -> Script:
        latency, status = plan[content]
        return Script(
            latency=latency, status=status if attempt == 0 else (200 if status == 500 else status)
        )

    server = FakeServer(script)
    outcome: dict[str, object] = {}

    async def main() -> None:
        cfg = MinimaLlmConfig(
            base_url="http://fake.invalid",
            model="m",
            rpm=0,
            max_outstanding=max_outstanding,
            base_backoff_s=0.5,
            max_attempts=2,
            batch=BatchConfig(num_workers=num_workers, max_failures=max_failures, heartbeat_s=0),
        )
        backend = OpenAIMinimaLlm(
            cfg, options=RuntimeOptions(server.transport, random.Random(seed))
        )
        reqs = [
            MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"p{i}"}]) for i in range(n)
        ]
        try:
            outcome["results"] = await backend.run_batched(reqs, progress=lambda line: None)
        except BatchAbortedError as exc:
            outcome["aborted_at"] = trio.current_time()
            outcome["results"] = exc.results
        await backend.aclose()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    results = outcome["results"]
    assert isinstance(results, list) and len(results) == n
    for i, r in enumerate(results):
        if r is None:
            assert "aborted_at" in outcome
            continue
        assert r.request_id == f"id{i}"
        if isinstance(r, MinimaLlmResponse):
            assert r.text == f"echo: p{i}"
        else:
            assert isinstance(r, MinimaLlmFailure) and plan[f"p{i}"][1] == 400
    assert server.max_in_flight <= min(num_workers, max_outstanding)
    failures = sum(isinstance(r, MinimaLlmFailure) for r in results)
    if "aborted_at" in outcome:
        assert max_failures is not None and failures == max_failures + 1
        assert all(s.start <= outcome["aborted_at"] for s in server.sent)  # type: ignore[operator]
        assert server.in_flight == 0
    else:
        assert max_failures is None or failures <= max_failures
        assert all(r is not None for r in results)
