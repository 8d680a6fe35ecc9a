"""The answer's fields read from ``raw`` (no new storage per result), pickled as they
are, the key kept out of a failure's ``raw``; a plain ``force_refresh`` is re-ask 1."""

from __future__ import annotations

import json
import pickle
import random
import sys
from pathlib import Path

from conftest import SECRET
from fakes import FakeServer, Script
from minimallm import (
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._context import refresh_number, reset_force_refresh, set_force_refresh
from minimallm._lazy_json import LazyJson
from minimallm._runtime.serve import RuntimeOptions

BODY = {
    "model": "served-model",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": None, "reasoning_content": "hm"},
            "finish_reason": "tool_calls",
        },
        {
            "index": 1,
            "message": {"role": "assistant", "content": "two", "refusal": None},
            "finish_reason": "stop",
            "logprobs": {"content": []},
        },
    ],
    "usage": {
        "prompt_tokens": 3,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 9},
    },
}


def test_fields_cost_no_storage_and_survive_pickling() -> None:
    bare = MinimaLlmResponse("r", "", None)
    lazy = MinimaLlmResponse("r", "", LazyJson(json.dumps(BODY)))
    assert sys.getsizeof(lazy) == sys.getsizeof(bare)
    assert len(MinimaLlmResponse.__slots__) == 7  # request_id .. total_tokens: nothing added
    back = pickle.loads(pickle.dumps(lazy))
    for response in (lazy, back):
        assert (response.reasoning, response.finish_reason, response.model) == (
            "hm",
            "tool_calls",
            "served-model",
        )
        assert (response.cached_tokens, response.reasoning_tokens) == (2, 9)
        assert [c.text for c in response.choices] == ["", "two"]
        assert response.choices[1].logprobs == {"content": []}
    assert bare.choices[0].text == "" and bare.finish_reason is None and bare.model is None


def _backend(tmp_path: Path, server: FakeServer) -> OpenAIMinimaLlm:
    cfg = MinimaLlmConfig(
        base_url="http://fake.invalid",
        model="m",
        api_key=SECRET,
        cache_dir=str(tmp_path),
        max_attempts=3,
    )
    return OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))


async def test_a_truncated_failure_keeps_its_raw_without_the_key(tmp_path: Path) -> None:
    body = {
        "choices": [
            {
                "message": {"content": None, "reasoning": f"the key is {SECRET}"},
                "finish_reason": "length",
            }
        ]
    }
    server = FakeServer(lambda c, n: Script(body=json.dumps(body).encode()))
    async with _backend(tmp_path, server) as backend:
        failure = await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "x"}]))
    assert isinstance(failure, MinimaLlmFailure) and failure.error_type == "Truncated"
    assert failure.attempts == 1 and len(server.sent) == 1
    assert failure.raw is not None
    assert failure.raw["choices"][0]["message"]["reasoning"] == "the key is ***"
    assert SECRET not in repr(failure) and SECRET.encode() not in pickle.dumps(failure)


async def test_a_plain_force_refresh_is_reask_1_and_replaces_the_entry(tmp_path: Path) -> None:
    seen: list[dict[str, object]] = []

    def answer(content: str, n: int) -> Script:
        return Script(body=json.dumps({"choices": [{"message": {"content": f"a{n}"}}]}).encode())

    server = FakeServer(answer)
    original = server.handle

    async def recording(body: bytes) -> object:
        seen.append(json.loads(body))
        return await original(body)

    server.handle = recording  # type: ignore[method-assign,assignment]
    req = MinimaLlmRequest("r", [{"role": "user", "content": "x"}], temperature=0.0)
    async with _backend(tmp_path, server) as backend:
        first = await backend.generate(req)
        again = await backend.generate(req)
        fresh = await backend.generate(req, force_refresh=True)
        after = await backend.generate(req)
    assert isinstance(first, MinimaLlmResponse) and isinstance(fresh, MinimaLlmResponse)
    assert isinstance(again, MinimaLlmResponse) and isinstance(after, MinimaLlmResponse)
    # the refreshed answer replaced the entry under the original key (after: cached a1)
    assert (first.text, again.cached, fresh.text, after.text, after.cached) == (
        "a0",
        True,
        "a1",
        "a1",
        True,
    )
    assert len(seen) == 2
    assert "seed" not in seen[0] and seen[0]["temperature"] == 0.0
    assert seen[1]["seed"] == 1 and seen[1]["temperature"] == 0.5 * 1 / (1 + 5)


def test_the_reask_number_comes_from_the_argument_or_the_context() -> None:
    assert refresh_number() == 0 and refresh_number(True) == 1
    token = set_force_refresh(3)
    try:
        assert refresh_number() == 3 and refresh_number(True) == 3
    finally:
        reset_force_refresh(token)
    token = set_force_refresh(True)
    try:
        assert refresh_number() == 1
    finally:
        reset_force_refresh(token)
