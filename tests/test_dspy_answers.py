"""DSPy with today's requests (SPEC §8): ``max_completion_tokens`` and other extra keys
reach the wire as given, and a parse re-ask of a temperature-0 request can change the
answer (seed + rising temperature), the good answer then cached under the original key.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

dspy = pytest.importorskip("dspy")

from pydantic import BaseModel  # noqa: E402

from minimallm._backend import OpenAIMinimaLlm  # noqa: E402
from minimallm._config.settings import BatchConfig, MinimaLlmConfig  # noqa: E402
from minimallm.dspy import MinimaLlmDSPyLM, run_dspy_batch  # noqa: E402
from minimallm.mock import MockServerConfig, MockServerThread  # noqa: E402
from minimallm.mock.dspy_responder import UNPARSEABLE_TEXT, DSPyResponder  # noqa: E402


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


class GreedyIsBroken:
    """A deterministic server whose greedy answer (temperature 0, no seed) never parses."""

    def __init__(self) -> None:
        self.inner = DSPyResponder()
        self.broken = True

    def __call__(self, body: dict[str, Any]) -> str:
        if self.broken and not body.get("temperature") and "seed" not in body:
            return UNPARSEABLE_TEXT
        return self.inner(body)


@pytest.fixture(scope="module")
def _server() -> Iterator[tuple[MockServerThread, GreedyIsBroken]]:
    responder = GreedyIsBroken()
    with MockServerThread(MockServerConfig(responder=responder)) as mock:
        yield mock, responder


@pytest.fixture
def server(_server: tuple[MockServerThread, GreedyIsBroken]) -> MockServerThread:
    mock, responder = _server
    mock.reset()
    responder.inner.reset()
    responder.broken = True
    return mock


def backend_for(mock: MockServerThread, **overrides: Any) -> OpenAIMinimaLlm:
    settings: dict[str, Any] = {
        "base_url": mock.base_url,
        "model": "mock-model",
        "rpm": 0,
        "base_backoff_s": 0.01,
        "timeout_s": 10.0,
        "batch": BatchConfig(heartbeat_s=0, num_workers=4, print_first_failures=0),
    }
    settings.update(overrides)
    return OpenAIMinimaLlm(MinimaLlmConfig(**settings))


def wire(mock: MockServerThread) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.body.items() if k != "messages"} for r in mock.requests]


def test_max_completion_tokens_and_extra_keys_go_out_as_given(server: MockServerThread) -> None:
    backend = backend_for(server)
    server_broken_off(server)
    lm = MinimaLlmDSPyLM(
        backend, temperature=1.0, max_completion_tokens=16000, reasoning_effort="low"
    )
    with dspy.context(lm=lm):
        dspy.Predict(Judge)(query="q", passage="p")
        dspy.Predict(Judge)(query="q2", passage="p", config={"logprobs": True, "seed": 3})
    plain = MinimaLlmDSPyLM(backend, temperature=0.5, max_tokens=64)
    with dspy.context(lm=plain):
        dspy.Predict(Judge)(query="q3", passage="p")
    with dspy.context(lm=MinimaLlmDSPyLM(backend, temperature=0.5)):
        dspy.Predict(Judge)(query="q4", passage="p", config={"max_completion_tokens": 99})
    backend.close_sync()
    first, second, third, fourth = wire(server)
    assert first == {
        "model": "mock-model",
        "temperature": 1.0,
        "max_completion_tokens": 16000,
        "reasoning_effort": "low",
    }
    assert second["logprobs"] is True and second["seed"] == 3
    assert "max_tokens" not in second and second["max_completion_tokens"] == 16000
    assert third == {"model": "mock-model", "temperature": 0.5, "max_tokens": 64}
    assert fourth["max_completion_tokens"] == 99 and "max_tokens" not in fourth


def server_broken_off(mock: MockServerThread) -> None:
    responder = mock.server.config.responder
    assert isinstance(responder, GreedyIsBroken)
    responder.broken = False


def test_a_parse_reask_at_temperature_0_changes_the_answer_and_fixes_the_cache(
    server: MockServerThread, tmp_path: Any
) -> None:
    objs = [Annotation(query=f"q{i}", passage="p") for i in range(3)]

    async def run(items: list[Annotation]) -> list[Annotation]:
        backend = backend_for(server, cache_dir=str(tmp_path))
        try:
            return await run_dspy_batch(
                Judge,
                items,
                fill,
                backend,
                predictor_class=dspy.Predict,
                max_parse_attempts=3,
                lm_kwargs={"temperature": 0.0},
            )
        finally:
            await backend.aclose()

    done = asyncio.run(run(objs))
    assert all(obj.grade in range(4) for obj in done)
    sent = wire(server)
    # attempt 1: chat + JSON fallback, both greedy and unparseable; re-ask 1: chat with
    # seed 1 and temperature 0.5*1/(1+5), which parses
    assert len(sent) == 9
    reasks = [b for b in sent if "seed" in b]
    assert len(reasks) == 3
    assert all(b["seed"] == 1 and b["temperature"] == pytest.approx(0.5 / 6) for b in reasks)
    # the cache now holds the good answer under the original (temperature 0, no seed)
    # key: a rerun parses at once from the cache, without a single HTTP call
    server.reset()
    again = asyncio.run(run([Annotation(query=f"q{i}", passage="p") for i in range(3)]))
    assert [o.grade for o in again] == [o.grade for o in done]
    assert server.requests == []
