"""Cached and reasoning tokens read from an answer's usage, and counted in progress."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from minimallm._lazy_json import LazyJson, stored
from minimallm._progress import ProgressTally, format_summary
from minimallm._progress.tokens import detail_tokens, usage_details
from minimallm._types import _RAW, MinimaLlmResponse


def response(body: dict[str, Any], *, lazy: bool = True) -> MinimaLlmResponse:
    raw: Any = LazyJson(json.dumps(body)) if lazy else body
    return MinimaLlmResponse("r", "text", raw)


USAGE = {
    "prompt_tokens": 120,
    "completion_tokens": 80,
    "prompt_tokens_details": {"cached_tokens": 100},
    "completion_tokens_details": {"reasoning_tokens": 64},
}


def test_details_come_from_the_usage_of_a_body_kept_as_text() -> None:
    body = {"choices": [{"message": {"content": "hi"}}], "usage": USAGE}
    r = response(body)
    assert detail_tokens(r) == (100, 64)
    assert detail_tokens(response(body, lazy=False)) == (100, 64)


def test_absent_details_are_none_and_cost_no_decoding() -> None:
    body = {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 1}}
    lazy = LazyJson(json.dumps(body))
    assert detail_tokens(MinimaLlmResponse("r", "x", lazy)) == (None, None)
    assert lazy._data is None  # the body was not decoded
    assert detail_tokens(MinimaLlmResponse("r", "x", None)) == (None, None)
    assert usage_details({"prompt_tokens_details": {"cached_tokens": True}}) == (None, None)


def test_a_usage_key_inside_the_answer_text_does_not_fool_it() -> None:
    text = 'the "usage": {"prompt_tokens": 9, "prompt_tokens_details": {"cached_tokens": 7}}'
    body = {"usage": USAGE, "choices": [{"message": {"content": text}}]}
    assert detail_tokens(response(body)) == (100, 64)
    lazy = LazyJson(json.dumps(body))
    assert detail_tokens(MinimaLlmResponse("r", "x", lazy)) == (100, 64)


def test_agrees_with_the_responses_own_fields_without_decoding_the_body() -> None:
    body = (
        '{"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": 9, '
        '"prompt_tokens_details": {"cached_tokens": 3}, '
        '"completion_tokens_details": {"reasoning_tokens": 4}}}'
    )
    response = MinimaLlmResponse("r", "x", LazyJson(body))  # type: ignore[arg-type]
    counts = detail_tokens(response)
    assert stored(_RAW, response)._data is None  # type: ignore[union-attr]  # not decoded
    assert counts == (response.cached_tokens, response.reasoning_tokens) == (3, 4)


_ints = st.one_of(st.none(), st.integers(0, 10**9))
_text = st.text(max_size=40)


@given(_ints, _ints, _text, st.booleans())
def test_same_as_decoding_the_whole_body(
    cached: int | None, reasoning: int | None, content: str, usage_first: bool
) -> None:
    usage: dict[str, Any] = {"prompt_tokens": 5, "completion_tokens": 6}
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    choices = [{"message": {"content": content + ' "usage": {"prompt_tokens": 1}'}}]
    body = (
        {"usage": usage, "choices": choices}
        if usage_first
        else {"choices": choices, "usage": usage}
    )
    assert detail_tokens(response(body)) == (cached, reasoning)


def test_the_tally_and_the_summary_count_every_kind_of_token() -> None:
    tally = ProgressTally(3, 0.0)
    for p, c, ca, re in [(100, 50, 80, 30), (20, 10, None, None)]:
        tally.item_finished(
            0.0, 1.0, "ok", prompt_tokens=p, completion_tokens=c, cached_tokens=ca,
            reasoning_tokens=re,
        )  # fmt: skip
    tally.item_finished(0.0, 1.0, "cached")
    snap = tally.snapshot("done", 2.0)
    assert (snap.prompt_tokens, snap.completion_tokens) == (120, 60)
    assert (snap.cached_tokens, snap.reasoning_tokens, snap.total_tokens) == (80, 30, 180)
    lines = format_summary(snap)
    assert lines[-1] == "[minimallm]   tokens in 120 (cached 80) out 60 (reasoning 30)"
    assert all(len(line) <= 99 for line in lines)
