"""Requests as researchers write them (SPEC §8): a per-request ``model`` and ``sample``,
``extra`` keys sent as given, ``User-Agent`` on every request; checked in what the
mock server received, and in the cache entries written."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, __version__
from minimallm._backend import OpenAIMinimaLlm
from minimallm._cache.keys import cache_key, canonical_request_json
from minimallm.cli import build_parser
from minimallm.cli._batch_send import send_job
from minimallm.cli.run_batch import Job, prepare
from minimallm.mock import MockServerThread

Factory = Callable[..., OpenAIMinimaLlm]
MSG = [{"role": "user", "content": "hello"}]


def _generate_all(backend: OpenAIMinimaLlm, reqs: list[MinimaLlmRequest]) -> list[Any]:
    async def main() -> list[Any]:
        async with backend:
            return await backend.run_batched(reqs)

    return trio.run(main)


def test_model_extra_and_user_agent_reach_the_server(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    extra = {
        "max_completion_tokens": 300,
        "n": 2,
        "logprobs": True,
        "reasoning_effort": "low",
        "seed": 7,
    }
    reqs = [
        MinimaLlmRequest("a", MSG, extra=extra),
        MinimaLlmRequest("b", MSG, model="other-model", sample=3, temperature=0.7),
    ]
    first, second = _generate_all(make_backend(), reqs)
    assert isinstance(first, MinimaLlmResponse) and isinstance(second, MinimaLlmResponse)
    assert len(first.choices) == 2 and second.model == "other-model"
    bodies = {
        r.body["messages"][0]["content"] and r.body.get("model"): r for r in mock_server.requests
    }
    seen_a, seen_b = bodies["mock-model"], bodies["other-model"]
    assert {k: v for k, v in seen_a.body.items() if k != "messages"} == {
        "model": "mock-model",
        **extra,
    }
    assert seen_b.body == {"model": "other-model", "messages": MSG, "temperature": 0.7}  # no sample
    for seen in (seen_a, seen_b):
        assert seen.headers["user-agent"] == f"minimallm/{__version__}"


def test_the_key_is_unchanged_without_model_and_sample() -> None:
    plain = MinimaLlmRequest("x", MSG, temperature=0.0, extra={"top_p": 1})
    # the formula of the original implementation, byte for byte
    expected = json.dumps(
        {"model": "m", "messages": MSG, "temperature": 0.0, "extra": {"top_p": 1}},
        sort_keys=True,
        ensure_ascii=True,
        separators=(",", ":"),
    )
    assert canonical_request_json("m", plain) == expected
    named = MinimaLlmRequest("x", MSG, temperature=0.0, extra={"top_p": 1}, model="m")
    assert cache_key("m", named) == cache_key("m", plain)  # naming the configured model
    keys = {
        cache_key("m", plain),
        cache_key("m", MinimaLlmRequest("x", MSG, temperature=0.0, extra={"top_p": 1}, model="n")),
        cache_key("m", MinimaLlmRequest("x", MSG, temperature=0.0, extra={"top_p": 1}, sample=1)),
        cache_key("m", MinimaLlmRequest("x", MSG, temperature=0.0, extra={"top_p": 1}, sample=2)),
    }
    assert len(keys) == 4


def _rows(cache_dir: Path) -> int:
    [db] = [p for p in cache_dir.iterdir() if p.suffix in (".db", ".sqlite", ".sqlite3")]
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return int(conn.execute("select count(*) from cache").fetchone()[0])


def test_cache_entries_per_model_and_per_sample(
    make_backend: Factory, mock_server: MockServerThread, tmp_path: Path
) -> None:
    reqs = [
        MinimaLlmRequest("s0", MSG, temperature=1.0),
        *(MinimaLlmRequest(f"s{k}", MSG, temperature=1.0, sample=k) for k in (1, 2, 3)),
        MinimaLlmRequest("m", MSG, temperature=1.0, model="other-model"),
    ]
    first = _generate_all(make_backend(cache_dir=str(tmp_path)), reqs)
    assert all(isinstance(r, MinimaLlmResponse) and not r.cached for r in first)
    assert len(mock_server.requests) == 5  # five keys: five calls, none shared
    assert _rows(tmp_path) == 5
    again = _generate_all(make_backend(cache_dir=str(tmp_path)), reqs)
    assert all(isinstance(r, MinimaLlmResponse) and r.cached for r in again)
    assert len(mock_server.requests) == 5


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"model": ""}, "model must be a non-empty string"),
        ({"model": 5}, "model must be a non-empty string"),
        ({"sample": "1"}, "sample must be an integer >= 0"),
        ({"sample": -1}, "sample must be an integer >= 0"),
        ({"sample": True}, "sample must be an integer >= 0"),
    ],
)
def test_a_bad_model_or_sample_is_that_items_failure(
    make_backend: Factory, mock_server: MockServerThread, fields: dict[str, Any], says: str
) -> None:
    [result] = _generate_all(make_backend(), [MinimaLlmRequest("bad", MSG, **fields)])
    assert isinstance(result, MinimaLlmFailure) and result.error_type == "InvalidRequest"
    assert says in result.message
    assert mock_server.requests == []


def test_run_batch_sends_each_lines_model(mock_server: MockServerThread, tmp_path: Path) -> None:
    inp = tmp_path / "in.jsonl"
    rows = [
        {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "m1", "messages": MSG, "max_completion_tokens": 9}},
        {"custom_id": "b", "messages": MSG, "model": "m2"},
        {"custom_id": "c", "messages": MSG},
    ]  # fmt: skip
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out.jsonl"
    args = ["run-batch", str(inp), "-o", str(out), "--base-url", mock_server.base_url]
    args += ["--model", "run-model", "--rpm", "0", "--no-cache"]
    ns = build_parser().parse_args(args)
    err = io.StringIO()
    with contextlib.ExitStack() as stack:
        job = prepare(ns, stack, {}, err)
        assert isinstance(job, Job), err.getvalue()
        assert send_job(job, quiet=True, err=err) == 0, err.getvalue()
    sent = {r.body["model"]: r.body for r in mock_server.requests}
    assert sorted(sent) == ["m1", "m2", "run-model"]
    assert sent["m1"]["max_completion_tokens"] == 9 and "max_tokens" not in sent["m1"]
