"""``MinimaLlmResponse.raw`` is a plain dict when read (json.dumps, pickle, ==), yet
kept as the server's text until somebody reads it."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import random
from pathlib import Path

from fakes import FakeServer, Script
from minimallm import MinimaLlmConfig, MinimaLlmRequest, MinimaLlmResponse, OpenAIMinimaLlm
from minimallm._lazy_json import LazyJson, stored
from minimallm._runtime.serve import RuntimeOptions
from minimallm._types import _RAW

BODY = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hé"}}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    "system_fingerprint": None,
    "nested": {"a": [1, 2.5, True, {"b": "c"}]},
}


def backend(server: FakeServer, cache_dir: Path) -> OpenAIMinimaLlm:
    cfg = MinimaLlmConfig(base_url="http://fake.invalid", model="m", cache_dir=str(cache_dir))
    return OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))


def ask(rid: str) -> MinimaLlmRequest:
    return MinimaLlmRequest(rid, [{"role": "user", "content": "q"}])


def check_plain_dict(response: object) -> None:
    assert isinstance(response, MinimaLlmResponse)
    assert isinstance(stored(_RAW, response), LazyJson)  # not decoded until read
    raw = response.raw
    assert type(raw) is dict and raw == BODY
    assert stored(_RAW, response) is raw  # decoded once, kept
    # the C encoder, the pure-Python one (indent), nested, and a JSONL line
    assert json.loads(json.dumps(raw)) == BODY
    assert json.loads(json.dumps(raw, indent=2)) == BODY
    assert json.loads(json.dumps([raw, {"r": raw}])) == [BODY, {"r": BODY}]
    assert json.loads(json.dumps({"id": response.request_id, "raw": response.raw})) == {
        "id": response.request_id,
        "raw": BODY,
    }
    assert dict(raw) == {**raw} == BODY
    back = pickle.loads(pickle.dumps(response))
    assert type(back.raw) is dict and back == response
    assert dataclasses.asdict(response)["raw"] == BODY
    assert copy.deepcopy(response) == response


async def test_raw_is_a_plain_dict_fresh_shared_and_from_the_cache(tmp_path: Path) -> None:
    server = FakeServer(lambda content, n: Script(body=json.dumps(BODY).encode()))
    async with backend(server, tmp_path) as b:
        fresh = await b.generate(ask("a"))
        recent = await b.generate(ask("b"))  # the in-memory copy, before any commit
    check_plain_dict(fresh)
    check_plain_dict(recent)
    async with backend(server, tmp_path) as b:
        [hit] = await b.run_batched([ask("c")])
        single = await b.generate(ask("d"))
    assert isinstance(hit, MinimaLlmResponse) and hit.cached
    check_plain_dict(hit)
    check_plain_dict(single)
    assert len(server.sent) == 1


def test_a_response_built_by_hand_keeps_its_raw() -> None:
    mine = {"k": [1]}
    response = MinimaLlmResponse("r", "t", mine)
    assert response.raw is mine
    assert MinimaLlmResponse("r", "t").raw is None
    lazy = MinimaLlmResponse("r", "t", LazyJson("not json"))
    assert lazy.raw == {} and type(lazy.raw) is dict
