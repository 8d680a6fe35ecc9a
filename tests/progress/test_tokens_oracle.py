"""detail_tokens (_progress/tokens.py: the response's slot read directly, per answer)
against a frozen copy of it as it was (the oracle): the same counts for every shape of
answer and of ``raw`` it handles (a body kept as text, a decoded dict, none at all).
A change meant to alter the counts ends this test's use: delete it with its oracle
rather than bend the comparison."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm._lazy_json import LazyJson, stored
from minimallm._progress.tokens import detail_tokens
from minimallm._types import _RAW, MinimaLlmResponse

# --- frozen copy of the code before (do not edit) -----------------------------------

_OLD_USAGE = '"usage"'
# A count inside its details object (no nested object in between), e.g.
# "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 1920}
_OLD_CACHED = re.compile(r'"prompt_tokens_details"\s*:\s*\{[^{}]*?"cached_tokens"\s*:\s*(\d+)')
_OLD_REASONING = re.compile(
    r'"completion_tokens_details"\s*:\s*\{[^{}]*?"reasoning_tokens"\s*:\s*(\d+)'
)
_OLD_NONE: tuple[int | None, int | None] = (None, None)


def old_detail_tokens(response: MinimaLlmResponse) -> tuple[int | None, int | None]:
    """``(cached_tokens, reasoning_tokens)`` of ``response``; None where the server
    did not say."""
    # Not the response's own ``cached_tokens``/``reasoning_tokens``: those decode the
    # whole body on first read, and a batch's progress reads every answer.
    raw = stored(_RAW, response)  # without decoding a body kept as text
    if not isinstance(raw, LazyJson):
        return old_usage_details(raw.get("usage") if isinstance(raw, Mapping) else None)
    text = raw.text
    if "cached_tokens" not in text and "reasoning_tokens" not in text:
        return _OLD_NONE
    found = old_details_of_text(text)
    if found is None:  # not where expected: decode the whole body (rare)
        return old_usage_details(raw.get("usage"))
    return found


def old_usage_details(usage: object) -> tuple[int | None, int | None]:
    """``(cached_tokens, reasoning_tokens)`` from a decoded ``usage`` object."""
    if type(usage) is not dict and not isinstance(usage, Mapping):
        return _OLD_NONE
    prompt = usage.get("prompt_tokens_details")
    completion = usage.get("completion_tokens_details")
    cached = prompt.get("cached_tokens") if old_is_mapping(prompt) else None
    reasoning = completion.get("reasoning_tokens") if old_is_mapping(completion) else None
    return old_count(cached), old_count(reasoning)


def old_is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    return type(value) is dict or isinstance(value, Mapping)


def old_details_of_text(text: str) -> tuple[int | None, int | None] | None:
    """The two counts from the top-level ``usage`` object of a JSON body without
    decoding it; None when ``usage`` cannot be found so. (Inside a string a key is
    escaped, ``\\"usage\\"``, so it is not taken for one. Servers put ``usage`` last,
    so the search runs from the end.)"""
    at = text.rfind(_OLD_USAGE)
    while at > 0 and text[at - 1] == "\\":
        at = text.rfind(_OLD_USAGE, 0, at)
    if at < 0:
        return None
    cached = _OLD_CACHED.search(text, at)
    reasoning = _OLD_REASONING.search(text, at)
    return (
        None if cached is None else int(cached[1]),
        None if reasoning is None else int(reasoning[1]),
    )


def old_count(value: object) -> int | None:
    return value if type(value) is int else None


# --- the test ------------------------------------------------------------------------

_count_values = st.one_of(
    st.integers(0, 10**6), st.none(), st.booleans(), st.just("7"), st.floats(0, 9)
)
_details = st.one_of(
    st.none(),
    st.just("n/a"),
    st.dictionaries(
        st.sampled_from(["cached_tokens", "reasoning_tokens", "audio_tokens"]),
        _count_values,
        max_size=3,
    ),
    st.builds(lambda v: {"nested": {"cached_tokens": v}, "reasoning_tokens": v}, _count_values),
)
_usage = st.one_of(
    st.none(),
    st.just([1, 2]),
    st.fixed_dictionaries(
        {"prompt_tokens": st.integers(0, 99), "completion_tokens": st.integers(0, 99)},
        optional={
            "prompt_tokens_details": _details,
            "completion_tokens_details": _details,
            "cached_tokens": _count_values,
        },
    ),
)
_decoys = st.sampled_from(
    [
        "",
        "plain",
        '"usage": {"prompt_tokens_details": {"cached_tokens": 9}}',
        "cached_tokens reasoning_tokens",
        '\\"usage\\"',
    ]
)


def _body(usage: Any, content: str, usage_first: bool, extra: Any) -> dict[str, Any]:
    choices = [{"message": {"content": content}}]
    body: dict[str, Any] = {"usage": usage} if usage_first else {}
    body["choices"] = choices
    if extra is not None:
        body["extra"] = extra
    if not usage_first and usage is not None:
        body["usage"] = usage
    return body


@settings(max_examples=500)
@given(
    _usage,
    st.one_of(_decoys, st.text(max_size=30)),
    st.booleans(),
    st.one_of(st.none(), _usage),
    st.sampled_from(["lazy", "lazy-ascii", "lazy-indent", "escaped", "dict", "none", "junk"]),
)
def test_the_same_counts_as_before_for_every_shape(
    usage: Any, content: str, usage_first: bool, extra: Any, kept: str
) -> None:
    body = _body(usage, content, usage_first, extra)
    raw: Any
    if kept == "lazy":
        raw = LazyJson(json.dumps(body, ensure_ascii=False))
    elif kept == "lazy-ascii":
        raw = LazyJson(json.dumps(body))
    elif kept == "lazy-indent":
        raw = LazyJson(json.dumps(body, indent=2))
    elif kept == "escaped":  # every key's underscore written as an escape
        raw = LazyJson(json.dumps(body).replace("_tokens", "\\u005ftokens"))
    elif kept == "dict":
        raw = body
    elif kept == "none":
        raw = None
    else:
        raw = LazyJson(json.dumps(content))  # not a JSON object at all
    new = MinimaLlmResponse("r", "t", raw)
    old = MinimaLlmResponse("r", "t", raw)
    assert detail_tokens(new) == old_detail_tokens(old)
    if isinstance(raw, LazyJson):
        assert stored(_RAW, new) is raw  # still kept as it was


def test_the_oracle_tells_a_changed_count_apart() -> None:
    text = json.dumps({"usage": {"prompt_tokens_details": {"cached_tokens": 3}}})
    r = MinimaLlmResponse("r", "t", LazyJson(text))
    assert old_detail_tokens(r) == detail_tokens(r) == (3, None)
