"""run_dspy_batch tells the truth: a batch stopped by parse failures raises
DSPyBatchAbortedError (a DSPyBatchError and a BatchAbortedError, with the partial
results), and its progress shows the LM calls while they are being made."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Iterator
from typing import Any

import pytest
import trio

dspy = pytest.importorskip("dspy")

from pydantic import BaseModel  # noqa: E402

from minimallm import (  # noqa: E402
    BatchAbortedError,
    BatchProgress,
    MinimaLlmFailure,
    TokenBudgetExceededError,
)
from minimallm._backend import OpenAIMinimaLlm  # noqa: E402
from minimallm._config.settings import BatchConfig, MinimaLlmConfig  # noqa: E402
from minimallm._errors import DSPyBatchAbortedError, DSPyBatchError  # noqa: E402
from minimallm.dspy import run_dspy_batch  # noqa: E402
from minimallm.mock import MockServerConfig, MockServerThread  # noqa: E402
from minimallm.mock.dspy_responder import DSPyResponder  # noqa: E402


class Judge(dspy.Signature):  # type: ignore[misc]
    """Grade how relevant the passage is to the query, 0 (not) to 3 (perfectly)."""

    query: str = dspy.InputField()
    passage: str = dspy.InputField()
    grade: int = dspy.OutputField(desc="0, 1, 2 or 3")


class Annotation(BaseModel):
    query: str
    passage: str
    grade: int | None = None


def fill(prediction: Any, obj: Annotation) -> None:
    obj.grade = int(prediction.grade)


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(MockServerConfig(responder=DSPyResponder())) as server:
        yield server


def backend_for(mock: MockServerThread, **batch: Any) -> OpenAIMinimaLlm:
    settings: dict[str, Any] = {"heartbeat_s": 0, "num_workers": 4, "print_first_failures": 0}
    settings.update(batch)
    return OpenAIMinimaLlm(
        MinimaLlmConfig(
            base_url=mock.base_url,
            model="mock-model",
            rpm=0,
            timeout_s=10.0,
            batch=BatchConfig(**settings),
        )
    )


def test_a_batch_stopped_by_parse_failures_raises_dspy_batch_aborted_error(
    mock: MockServerThread,
) -> None:
    objs = [Annotation(query=f"q{i} #dspy:unparseable=99", passage="p") for i in range(12)]
    backend = backend_for(mock, max_failures=2, num_workers=2)

    async def main() -> DSPyBatchAbortedError:
        with pytest.raises(DSPyBatchError) as info:
            await run_dspy_batch(Judge, objs, fill, backend, max_parse_attempts=1)
        await backend.aclose()
        assert isinstance(info.value, DSPyBatchAbortedError)
        return info.value

    error = asyncio.run(main())
    assert isinstance(error, BatchAbortedError)  # old `except BatchAbortedError` still works
    assert isinstance(error, RuntimeError)
    assert str(error).startswith("Aborting batch: 3 failures")
    assert "run_dspy_batch(Judge) stopped: " in str(error)
    assert len(error.results) == 12
    assert len(error.failures) >= 3
    assert all(
        isinstance(f, MinimaLlmFailure) and f.error_type == "ParseError" for _, f in error.failures
    )
    assert all(error.results[i] is f for i, f in error.failures)
    assert any(r is None for r in error.results)  # stopped early: some never ran


@pytest.fixture(scope="module")
def slow_mock() -> Iterator[MockServerThread]:
    config = MockServerConfig(responder=DSPyResponder(), latency_s=0.2)
    with MockServerThread(config) as server:
        yield server


async def test_the_progress_shows_the_lm_calls_while_items_run(
    slow_mock: MockServerThread,
) -> None:
    # each item makes 3 LM calls of 0.2 s (chat + JSON unparseable, then chat): no item
    # is done for 0.6 s, while reports come every 0.05 s
    objs = [Annotation(query=f"q{i} #dspy:unparseable=2", passage="p") for i in range(6)]
    backend = backend_for(slow_mock, num_workers=3, heartbeat_s=0.05)
    snapshots: list[BatchProgress] = []
    results = await run_dspy_batch(Judge, objs, fill, backend, progress=snapshots.append)
    await backend.aclose()
    assert all(r.grade in range(4) for r in results)
    before_any_done = [s for s in snapshots if s.done == 0]
    # no more "0/6 ... ETA ?" with no sign of the calls under way
    assert any(s.calls_running > 0 for s in before_any_done)
    assert any(s.calls > 0 for s in before_any_done)
    last = snapshots[-1]
    assert last.kind == "done" and last.done == 6
    assert last.calls == 6 * 3 and last.calls_running == 0
    assert last.tokens_reported and last.prompt_tokens > 0 and last.completion_tokens > 0


async def test_max_total_tokens_counts_the_lm_calls(mock: MockServerThread) -> None:
    objs = [Annotation(query=f"q{i}", passage="p") for i in range(40)]
    backend = backend_for(mock, num_workers=2, max_total_tokens=1000)
    with pytest.raises(TokenBudgetExceededError) as info:
        await run_dspy_batch(Judge, objs, fill, backend)
    await backend.aclose()
    err = info.value
    assert err.tokens_used >= 1000 and "MAX_TOTAL_TOKENS=1,000" in str(err)
    done = [r for r in err.results if r is not None]
    assert 0 < len(done) < 40


async def test_the_progress_lines_name_the_lm_calls(mock: MockServerThread) -> None:
    objs = [Annotation(query=f"q{i}", passage="p") for i in range(3)]
    backend = backend_for(mock)
    lines = io.StringIO()
    await run_dspy_batch(Judge, objs, fill, backend, progress=lines)
    await backend.aclose()
    summary = [line for line in lines.getvalue().splitlines() if "finished" in line]
    assert summary and "LM calls 3" in summary[0]
    assert trio.lowlevel.current_trio_token() is not None
