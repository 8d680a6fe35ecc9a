"""Answers as today's endpoints give them, end to end against the mock (``#mock:shape``):
each shape and each failure class through ``generate`` and ``run_batched``, from trio
and from asyncio, with the attempts the server saw counted."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from minimallm import (
    BatchAbortedError,
    MinimaLlmChoice,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    MinimaLlmResult,
)
from minimallm._backend import OpenAIMinimaLlm
from minimallm.mock import MockServerThread

Factory = Callable[..., OpenAIMinimaLlm]
THINKING = "Let me think about this step by step."


def ask(content: str, rid: str = "r", **kw: Any) -> MinimaLlmRequest:
    return MinimaLlmRequest(rid, [{"role": "user", "content": content}], **kw)


def run_in(loop: str, fn: Callable[[], Awaitable[Any]]) -> Any:
    if loop == "trio":
        return trio.run(fn)
    return asyncio.run(fn())  # type: ignore[arg-type]


def answer(backend: OpenAIMinimaLlm, loop: str, api: str, req: MinimaLlmRequest) -> MinimaLlmResult:
    async def main() -> MinimaLlmResult:
        try:
            if api == "generate":
                return await backend.generate(req)
            try:
                [result] = await backend.run_batched([req])
            except BatchAbortedError as exc:  # a quota answer stops the batch
                [result] = exc.results
                assert isinstance(result, MinimaLlmFailure)
                assert result.error_type == "QuotaExceeded"
            return result
        finally:
            await backend.aclose()

    result: MinimaLlmResult = run_in(loop, main)
    return result


def sent(mock: MockServerThread, content: str) -> int:
    return sum(1 for r in mock.requests if r.body["messages"][-1]["content"] == content)


LOOPS_AND_APIS = pytest.mark.parametrize(
    ("loop", "api"),
    [
        ("trio", "generate"),
        ("trio", "run_batched"),
        ("asyncio", "generate"),
        ("asyncio", "run_batched"),
    ],
)


@LOOPS_AND_APIS
@pytest.mark.parametrize("name", ["reasoning", "reasoning_content"])
def test_reasoning_under_either_name(
    make_backend: Factory, mock_server: MockServerThread, loop: str, api: str, name: str
) -> None:
    content = f"why? #mock:shape={name}"
    result = answer(make_backend(), loop, api, ask(content))
    assert isinstance(result, MinimaLlmResponse)
    assert (result.text, result.reasoning, result.finish_reason) == (
        f"echo: {content}",
        THINKING,
        "stop",
    )
    assert result.reasoning_tokens == 8 and result.model == "mock-model"
    assert sent(mock_server, content) == 1


@LOOPS_AND_APIS
@pytest.mark.parametrize(
    ("shape", "field", "expected", "finish"),
    [
        ("reasoning_only", "reasoning", THINKING, "stop"),
        ("tool_call", "tool_calls", None, "tool_calls"),
        ("refusal", "refusal", "I can't help with that.", "stop"),
    ],
)
def test_content_null_beside_something_is_a_success_with_empty_text(
    make_backend: Factory,
    mock_server: MockServerThread,
    loop: str,
    api: str,
    shape: str,
    field: str,
    expected: Any,
    finish: str,
) -> None:
    content = f"do it #mock:shape={shape}"
    result = answer(make_backend(), loop, api, ask(content))
    assert isinstance(result, MinimaLlmResponse), result
    assert result.text == "" and result.finish_reason == finish
    if shape == "tool_call":
        [call] = result.tool_calls
        assert call["function"]["name"] == "answer"
        assert call["function"]["arguments"] == '{"text": "echo: do it #mock:shape=tool_call"}'
    else:
        assert getattr(result, field) == expected
    assert sent(mock_server, content) == 1


FAILURES = [
    ("length", "Truncated", 200, "max_tokens"),
    ("content_filter", "ContentFiltered", 200, "content filter"),
    ("context_length", "ContextLengthExceeded", 400, "maximum context length"),
    ("quota", "QuotaExceeded", 429, "exceeded your current quota"),
]


@LOOPS_AND_APIS
@pytest.mark.parametrize(("shape", "error_type", "status", "says"), FAILURES)
def test_failures_retrying_cannot_fix_stop_at_once_named(
    make_backend: Factory,
    mock_server: MockServerThread,
    loop: str,
    api: str,
    shape: str,
    error_type: str,
    status: int,
    says: str,
) -> None:
    content = f"hard #mock:shape={shape}"
    result = answer(make_backend(max_attempts=5), loop, api, ask(content))
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.status, result.attempts) == (error_type, status, 1)
    assert says in result.message
    assert sent(mock_server, content) == 1
    if shape == "length":  # the reasoning the tokens went to is kept
        assert result.raw is not None
        assert result.raw["choices"][0]["message"]["reasoning"] == THINKING


def test_n_choices_and_logprobs(make_backend: Factory) -> None:
    req = ask("a b", extra={"n": 3, "logprobs": True, "top_logprobs": 2})
    result = answer(make_backend(), "trio", "generate", req)
    assert isinstance(result, MinimaLlmResponse)
    assert len(result.choices) == 3
    assert all(isinstance(c, MinimaLlmChoice) for c in result.choices)
    assert [c.text for c in result.choices] == ["echo: a b"] * 3
    first = result.choices[0].logprobs["content"]
    assert [t["token"] for t in first] == ["echo:", "a", "b"]
    assert len(first[0]["top_logprobs"]) == 2


def test_a_cached_answer_gives_the_same_fields(make_backend: Factory, tmp_path: Any) -> None:
    req = ask("cache me #mock:shape=reasoning", extra={"n": 2})
    fresh = answer(make_backend(cache_dir=str(tmp_path)), "trio", "generate", req)
    again = answer(make_backend(cache_dir=str(tmp_path)), "asyncio", "generate", req)
    assert isinstance(fresh, MinimaLlmResponse) and isinstance(again, MinimaLlmResponse)
    assert again.cached and not fresh.cached
    names = ("text", "reasoning", "finish_reason", "tool_calls", "refusal", "model")
    names += ("cached_tokens", "reasoning_tokens", "choices")
    assert [getattr(again, n) for n in names] == [getattr(fresh, n) for n in names]
    assert len(again.choices) == 2
