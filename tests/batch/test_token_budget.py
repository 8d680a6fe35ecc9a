"""MAX_TOTAL_TOKENS: a batch stops once its answers used that many tokens, like an abort,
with its partial results; progress snapshots and the summary count every kind of token."""

from __future__ import annotations

import asyncio
import json
import random
from pathlib import Path

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    BatchProgress,
    MinimaLlmConfig,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
    TokenBudgetExceededError,
)
from minimallm._runtime.serve import RuntimeOptions

USAGE = {
    "prompt_tokens": 10,
    "completion_tokens": 5,
    "prompt_tokens_details": {"cached_tokens": 8},
    "completion_tokens_details": {"reasoning_tokens": 3},
}


def usage_server() -> FakeServer:
    """Each answer takes 1 s and used 15 tokens (8 of them cached, 3 reasoning)."""

    def script(content: str, n: int) -> Script:
        body = {"choices": [{"message": {"content": f"re {content}"}}], "usage": USAGE}
        return Script(latency=1.0, body=json.dumps(body).encode())

    return FakeServer(script)


def backend_for(server: FakeServer, **batch: object) -> OpenAIMinimaLlm:
    return OpenAIMinimaLlm(
        MinimaLlmConfig(
            base_url="http://fake.invalid",
            model="m",
            rpm=0,
            batch=BatchConfig(heartbeat_s=0, **batch),  # type: ignore[arg-type]
        ),
        options=RuntimeOptions(server.transport, random.Random(0)),
    )


def reqs(n: int) -> list[MinimaLlmRequest]:
    return [MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"p{i}"}]) for i in range(n)]


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_a_batch_stops_once_it_used_max_total_tokens(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = usage_server()
    snapshots: list[BatchProgress] = []
    # 4 at a time, 15 tokens each: the 7th answer (second round) reaches 100
    async with backend_for(server, num_workers=4, max_total_tokens=100) as backend:
        with pytest.raises(TokenBudgetExceededError) as info:
            await backend.run_batched(reqs(40), progress=snapshots.append)
    err = info.value
    assert isinstance(err, BatchAbortedError)  # `except BatchAbortedError` still catches it
    assert err.tokens_used == 105
    assert str(err).startswith("Aborting batch: 105 tokens used (prompt 70, completion 35")
    assert "MAX_TOTAL_TOKENS=100" in str(err)
    done = [r for r in err.results if isinstance(r, MinimaLlmResponse)]
    # the 7th answer stopped it; one finishing at that same instant is kept too
    assert len(err.results) == 40 and len(done) in (7, 8)
    assert trio.current_time() == pytest.approx(2.0)  # stopped at once, mid second round
    assert len(server.sent) == 8  # nothing sent after the stop
    last = snapshots[-1]
    assert last.kind == "done"
    n = len(done)
    assert (last.prompt_tokens, last.completion_tokens) == (10 * n, 5 * n)
    assert (last.cached_tokens, last.reasoning_tokens) == (8 * n, 3 * n)


async def test_a_batch_reads_token_details_from_the_parsed_usage_not_the_body(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the parse already decoded `usage`: no second scan of each answer's body
    def scan(response: object) -> None:
        raise AssertionError("the body was scanned again")

    monkeypatch.setattr("minimallm._batch.items.detail_tokens", scan)
    snapshots: list[BatchProgress] = []
    async with backend_for(usage_server(), num_workers=4) as backend:
        results = await backend.run_batched(reqs(6), progress=snapshots.append)
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert (snapshots[-1].cached_tokens, snapshots[-1].reasoning_tokens) == (8 * 6, 3 * 6)


async def test_cache_hits_use_no_tokens(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    server = usage_server()
    batch = BatchConfig(heartbeat_s=0, num_workers=4, max_total_tokens=100)
    cfg = MinimaLlmConfig(
        base_url="http://fake.invalid", model="m", rpm=0, batch=batch, cache_dir=str(tmp_path)
    )
    options = RuntimeOptions(server.transport, random.Random(0))
    async with OpenAIMinimaLlm(cfg, options=options) as backend:
        await backend.run_batched(reqs(6))  # 90 tokens
        snapshots: list[BatchProgress] = []
        results = await backend.run_batched(reqs(6) * 3, progress=snapshots.append)
    assert all(isinstance(r, MinimaLlmResponse) and r.cached for r in results)
    assert snapshots[-1].total_tokens == 0 and not snapshots[-1].tokens_reported


def test_the_budget_applies_under_asyncio_too() -> None:
    server = usage_server()

    async def main() -> TokenBudgetExceededError:
        async with backend_for(server, num_workers=2, max_total_tokens=30) as backend:
            try:
                await backend.run_batched(reqs(10), progress=[].append)
            except TokenBudgetExceededError as exc:
                return exc
        raise AssertionError("the batch did not stop")

    err = asyncio.run(main())
    assert err.tokens_used == 30
    assert sum(isinstance(r, MinimaLlmResponse) for r in err.results) == 2
