"""Requests checked and encoded at the boundary: every bad request is named (index, id,
field, what is allowed); every good one encodes exactly as before."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm import InvalidRequestError, MinimaLlmError, MinimaLlmRequest
from minimallm._http.transport import build_payload, encode_body
from minimallm._requests import check_request, encode_request, request_label

USER = {"role": "user", "content": "hi"}


def req(**kw: Any) -> MinimaLlmRequest:
    fields: dict[str, Any] = {"request_id": "q17", "messages": [USER]}
    fields.update(kw)
    return MinimaLlmRequest(**fields)


def circular() -> dict[str, Any]:
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    return d


def deep(levels: int) -> Any:
    value: Any = 0
    for _ in range(levels):
        value = [value]
    return value


BAD_SHAPES = [
    (
        req(messages="hi"),
        "messages must be a list of objects with 'role' and 'content', got a string ('hi')",
    ),
    (req(messages=None), "messages must be a list of objects with 'role' and 'content', got None"),
    (
        req(messages=[]),
        "messages must be a list of objects with 'role' and 'content', got an empty list",
    ),
    (
        req(messages=[USER, USER, None]),
        "messages[2] is None; each message must be an object with 'role' and 'content'",
    ),
    (
        req(messages=["hi"]),
        "messages[0] must be an object with 'role' and 'content', got a string ('hi')",
    ),
    (
        req(messages=[("role", "user")]),
        "messages[0] must be an object with 'role' and 'content', got a tuple",
    ),
    (
        req(messages=[{"content": "x"}]),
        "messages[0] has no 'role' (e.g. 'user', 'system', 'assistant')",
    ),
    (
        req(messages=[{"role": 1, "content": "x"}]),
        "messages[0]['role'] must be a string, got an int (1)",
    ),
    (
        req(messages=[{"role": "user", "content": 5}]),
        "messages[0]['content'] must be a string, a list of content parts, or null, got an int (5)",
    ),
    (req(temperature="hot"), "temperature must be a number or None, got a string ('hot')"),
    (req(temperature=True), "temperature must be a number or None, got a bool (True)"),
    (req(temperature=math.nan), "temperature must be a finite number, got nan"),
    (req(max_tokens=0), "max_tokens must be an integer >= 1 or None, got an int (0)"),
    (req(max_tokens="5"), "max_tokens must be an integer >= 1 or None, got a string ('5')"),
    (req(max_tokens=2.0), "max_tokens must be an integer >= 1 or None, got a float (2.0)"),
    (
        req(extra=[("top_p", 1)]),
        "extra must be a dict (merged into the payload) or None, got a list",
    ),
    (req(extra={1: "x"}), "extra has a key of type int; keys must be strings"),
    (req(request_id=17), "request_id must be a string, got an int (17)"),
    ({"request_id": "q17", "messages": [USER]}, "must be a MinimaLlmRequest, got a dict"),
]

BAD_VALUES = [
    (
        req(extra={"x": object()}),
        "extra['x'] is an object of type object, not JSON (allowed: "
        "str, int, float, bool, None, and lists and objects of them)",
    ),
    (req(extra={"stop": {"a", "b"}}), "extra['stop'] is a set, not JSON"),
    (
        req(messages=[{"role": "user", "content": "ab\ud800c"}]),
        "messages[0]['content'] contains "
        "a lone surrogate (U+D800) at position 2, which is not valid Unicode",
    ),
    (
        req(messages=[{"role": "user", "content": [{"type": "text", "text": "\udcff"}]}]),
        "messages[0]['content'][0]['text'] contains a lone surrogate (U+DCFF) at position 0",
    ),
    (
        req(extra={"top_p": math.inf}),
        "extra['top_p'] is inf: not valid JSON (numbers must be finite)",
    ),
    (req(extra={"logit_bias": {"1": math.nan}}), "extra['logit_bias']['1'] is nan"),
    (req(extra={"d": circular()}), "extra['d']['self'] contains itself (a circular reference)"),
    (
        req(extra={"x": deep(5000)}),
        "extra['x'] is nested more than 200 levels deep",
    ),
    (req(extra={"x": {(1, 2): 3}}), "extra['x'] has a key of type tuple; keys must be strings"),
    (
        req(messages=[{"role": "user", "content": "x", "name": b"bytes"}]),
        "messages[0]['name'] is a bytes, not JSON",
    ),
]


@pytest.mark.parametrize(("request_", "problem"), BAD_SHAPES)
def test_check_request_names_the_field_and_what_is_allowed(request_: Any, problem: str) -> None:
    found = check_request(request_, 17)
    assert found is not None and found.endswith(f": {problem}")
    rid = getattr(request_, "request_id", None)
    assert found.startswith("request 17 (id 'q17')" if rid == "q17" else "request 17")


@pytest.mark.parametrize(("request_", "problem"), BAD_SHAPES + BAD_VALUES)
def test_encode_request_raises_one_named_error(request_: Any, problem: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        encode_request("m", request_, compress=False, index=17)
    error = info.value
    assert error.problem.startswith(problem)
    assert str(error).startswith("request 17")
    assert str(error).endswith(error.problem)
    assert error.index == 17
    assert isinstance(error, ValueError) and isinstance(error, MinimaLlmError)
    assert error.__cause__ is None and error.__context__ is None  # one clean error


def test_the_label_names_what_is_known() -> None:
    assert request_label(3, "a") == "request 3 (id 'a')"
    assert request_label(3) == "request 3"
    assert request_label(None, "a") == "request 'a'"
    assert request_label(None) == "request"
    assert request_label(0, "x" * 100).endswith("...)")
    with pytest.raises(InvalidRequestError, match=r"^request 'q17': temperature"):
        encode_request("m", req(temperature="hot"), compress=False)


GOOD = [
    req(),
    req(temperature=0.7, max_tokens=64, extra={"top_p": 0.9, "stop": ["\n"], "seed": 1}),
    req(messages=({"role": "system", "content": "sé"}, {"role": "user", "content": "日本"})),
    req(messages=[MappingProxyType({"role": "user", "content": "x", "name": "n"})]),
    req(messages=[{"role": "assistant", "content": None, "tool_calls": []}]),
    req(messages=[{"role": "user", "content": [{"type": "text", "text": "x"}]}], temperature=1),
    req(extra={"response_format": {"type": "json_object"}, "n": 2}),
]


@pytest.mark.parametrize("request_", GOOD)
@pytest.mark.parametrize("compress", [False, True])
def test_good_requests_encode_exactly_as_before(request_: MinimaLlmRequest, compress: bool) -> None:
    assert check_request(request_) is None
    body = encode_request("m", request_, compress=compress)
    expected = encode_body(build_payload("m", request_), compress=compress)
    if compress:
        body, expected = gzip.decompress(body), gzip.decompress(expected)
    assert body == expected


JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=10,
)
ODD = st.sampled_from([object(), {1, 2}, b"x", "\ud800", math.nan, (1, 2), frozenset(), 1j])
ANY = JSONISH | ODD | st.lists(JSONISH | ODD, max_size=3)


@settings(max_examples=400, deadline=None)
@given(
    request_id=st.text(max_size=5) | st.integers(),
    messages=ANY
    | st.lists(
        st.dictionaries(st.sampled_from(["role", "content", "name"]), ANY, max_size=3), max_size=3
    ),
    temperature=st.none() | ANY,
    max_tokens=st.none() | st.integers(-2, 5) | ANY,
    extra=st.none() | st.dictionaries(st.text(max_size=5) | st.integers(), ANY, max_size=3),
)
def test_any_request_encodes_or_raises_one_named_error(
    request_id: Any, messages: Any, temperature: Any, max_tokens: Any, extra: Any
) -> None:
    request_ = MinimaLlmRequest(request_id, messages, temperature, max_tokens, extra)
    try:
        body = encode_request("m", request_, compress=False, index=4)
    except InvalidRequestError as exc:
        assert str(exc).startswith("request 4")
        assert check_request(request_, 4) in (None, str(exc))
    else:
        assert check_request(request_, 4) is None
        sent = json.loads(body)
        assert sent["model"] == "m" and isinstance(sent["messages"], list)
        assert all(isinstance(m, Mapping) and isinstance(m["role"], str) for m in sent["messages"])
