"""A quota answer is systemic: a batch stops at the first one, says so, and keeps the
results it has (SPEC §8)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import pytest
import trio

from minimallm import BatchAbortedError, BatchConfig, MinimaLlmFailure, MinimaLlmRequest
from minimallm._backend import OpenAIMinimaLlm
from minimallm._batch.budget import FailureBudget
from minimallm.mock import MockServerThread

Factory = Callable[..., OpenAIMinimaLlm]


def _batch(n: int) -> list[MinimaLlmRequest]:
    # the first 20 are answered; the rest are refused for quota
    return [
        MinimaLlmRequest(
            f"r{i}",
            [{"role": "user", "content": f"q{i}" + (" #mock:shape=quota" if i >= 20 else "")}],
        )
        for i in range(n)
    ]


@pytest.mark.realtime
@pytest.mark.parametrize("loop", ["trio", "asyncio"])
def test_a_quota_answer_stops_a_1000_item_batch_at_once(
    make_backend: Factory, mock_server: MockServerThread, loop: str
) -> None:
    batch = BatchConfig(num_workers=16, max_failures=None, heartbeat_s=0)
    backend = make_backend(batch=batch, max_attempts=6)

    async def main() -> BaseException:
        try:
            await backend.run_batched(_batch(1000))
        except BatchAbortedError as exc:
            return exc
        finally:
            await backend.aclose()
        raise AssertionError("the batch did not stop")

    started = time.perf_counter()
    exc = trio.run(main) if loop == "trio" else asyncio.run(main())
    elapsed = time.perf_counter() - started
    assert isinstance(exc, BatchAbortedError)
    assert "quota" in str(exc) and "QuotaExceeded" in str(exc)
    assert str(exc).startswith("Aborting batch: ")
    assert len(exc.results) == 1000
    done = [r for r in exc.results if r is not None]
    quota = [r for r in done if isinstance(r, MinimaLlmFailure)]
    assert quota and all(f.error_type == "QuotaExceeded" and f.attempts == 1 for f in quota)
    assert len(done) < 100  # partial: stopped at the first, not after spending them all
    assert len(mock_server.requests) < 100
    assert elapsed < 2.0, elapsed


def test_the_budget_stops_at_the_first_quota_failure_even_with_no_budget() -> None:
    budget = FailureBudget(None, keep=5)
    other = MinimaLlmFailure("a", "HTTPError", "HTTP 500", 6, 500)
    assert budget.record(other) is None
    quota = MinimaLlmFailure("b", "QuotaExceeded", "QuotaExceeded: HTTP 429: You exceeded", 1, 429)
    message = budget.record(quota)
    assert message is not None and message.startswith("Aborting batch: 2 failures")
    assert "quota" in message
