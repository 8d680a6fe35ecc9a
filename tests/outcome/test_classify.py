"""The one classification table (``_outcome/classify.py``): every HTTP-layer exception
has its own row, the most specific class wins whatever the rows' order, and answers
that retrying cannot fix are named (quota, context length, content filter, truncated)."""

from __future__ import annotations

import json
import random

import pytest

from minimallm._http import errors as http_errors
from minimallm._http.reply import HttpReply
from minimallm._outcome import classify
from minimallm._outcome.attempts import AttemptError, AttemptSuccess
from minimallm._outcome.classify import (
    EXCEPTION_ROWS,
    exception_row,
    outcome_from_exception,
    timeout_outcome,
)
from minimallm._outcome.reply import outcome_from_reply

CLASSES = [
    obj
    for name in http_errors.__all__
    if isinstance(obj := getattr(http_errors, name), type) and issubclass(obj, Exception)
]


def test_every_http_error_class_has_a_row_of_its_own() -> None:
    assert len(CLASSES) >= 15
    missing = [cls.__name__ for cls in CLASSES if cls not in EXCEPTION_ROWS]
    assert not missing


def test_the_most_specific_class_wins_whatever_the_order(monkeypatch: pytest.MonkeyPatch) -> None:
    class Sub(http_errors.ProxyRejectedError):
        pass

    samples: list[BaseException] = [cls("x") for cls in CLASSES]
    samples += [Sub("x"), ConnectionResetError(104, "reset"), TimeoutError("t")]
    expected = [EXCEPTION_ROWS.get(type(e)) for e in samples]
    expected[-3] = EXCEPTION_ROWS[http_errors.ProxyRejectedError]
    expected[-2] = expected[-1] = EXCEPTION_ROWS[OSError]
    rows = list(EXCEPTION_ROWS.items())
    for seed in range(20):
        random.Random(seed).shuffle(rows)
        monkeypatch.setattr(classify, "EXCEPTION_ROWS", dict(rows))
        monkeypatch.setattr(classify, "_BY_TYPE", {})
        assert [exception_row(e) for e in samples] == expected


@pytest.mark.parametrize(
    ("exc", "kind", "retryable"),
    [
        (http_errors.ConnectError("refused"), "unreachable", True),
        (http_errors.ProxyError("proxy down"), "unreachable", True),
        # a proxy that said no for good is an answer, not an outage
        (http_errors.ProxyRejectedError("407"), "failed", False),
        (http_errors.TLSVerificationError("bad cert"), "failed", False),
        (http_errors.ReadError("reset"), "broken", True),
        (http_errors.LocalProtocolError("bad header"), "broken", False),
        (ConnectionResetError(104, "reset"), "broken", True),
    ],
)
def test_exception_rows_carry_their_flow_control_kind(
    exc: BaseException, kind: str, retryable: bool
) -> None:
    outcome = outcome_from_exception(exc)
    assert (outcome.kind, outcome.retryable, outcome.overload) == (kind, retryable, False)


def test_a_timeout_is_its_own_kind() -> None:
    outcome = timeout_outcome(5.0)
    assert (outcome.kind, outcome.status, outcome.retryable) == ("timeout", 408, True)


def _error(status: int, body: object) -> AttemptError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    outcome = outcome_from_reply(HttpReply(status, {}, raw))
    assert isinstance(outcome, AttemptError)
    return outcome


def _openai(code: str | None, kind: str | None, message: str) -> dict[str, object]:
    return {"error": {"message": message, "type": kind, "code": code}}


VLLM_CONTEXT = {
    "object": "error",
    "message": "This model's maximum context length is 2048 tokens. "
    "However, you requested 3000 tokens",
    "type": "BadRequestError",
    "code": 400,
}
LLAMA_CPP_CONTEXT = {
    "error": {
        "code": 400,
        "message": "the request exceeds the available context size, try increasing it",
        "type": "exceed_context_size_error",
    }
}
TGI_CONTEXT = {
    "error": "Input validation error: `inputs` tokens + `max_new_tokens` must be <= 4096. "
    "Given: 4000 `inputs` tokens and 200 `max_new_tokens`",
    "error_type": "validation",
}
QUOTA = "QuotaExceeded"
CONTEXT = "ContextLengthExceeded"
FILTERED = "ContentFiltered"
INVALID = "invalid_request_error"


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        (429, _openai("insufficient_quota", "insufficient_quota", "You exceeded"), QUOTA),
        (403, _openai("billing_hard_limit_reached", None, "Billing limit"), QUOTA),
        (429, _openai(None, "quota_exceeded", "over quota"), QUOTA),
        # a rate limit that merely mentions quota in its message is overload
        (429, _openai("rate_limit_exceeded", "requests", "quota of 60 RPM"), "HTTPError"),
        (400, _openai("context_length_exceeded", INVALID, "too long"), CONTEXT),
        (400, VLLM_CONTEXT, CONTEXT),
        (400, LLAMA_CPP_CONTEXT, CONTEXT),
        (422, TGI_CONTEXT, CONTEXT),
        (400, {"error": "prompt is too long"}, CONTEXT),
        (400, _openai("content_filter", None, "The response was filtered"), FILTERED),
        (400, _openai("content_policy_violation", INVALID, "policy"), FILTERED),
        (400, _openai(None, INVALID, "temperature must be <= 2"), "HTTPError"),
        (400, b"plain text: bad request", "HTTPError"),
    ],
)
def test_named_answers(status: int, body: object, error_type: str) -> None:
    outcome = _error(status, body)
    assert outcome.error_type == error_type
    if error_type != "HTTPError":
        assert (outcome.retryable, outcome.overload, outcome.kind) == (False, False, "failed")
        assert outcome.message.startswith(error_type)


def test_a_quota_429_is_not_overload_but_a_rate_limit_429_is() -> None:
    quota = _error(429, _openai("insufficient_quota", "insufficient_quota", "quota"))
    rate = _error(429, _openai("rate_limit_exceeded", "requests", "slow down"))
    assert (quota.kind, quota.overload, quota.retryable) == ("failed", False, False)
    assert (rate.kind, rate.overload, rate.retryable) == ("overload", True, True)


def _completion(message: dict[str, object], finish: str = "stop") -> bytes:
    choice = {"index": 0, "message": message, "finish_reason": finish}
    return json.dumps({"choices": [choice], "model": "m"}).encode()


@pytest.mark.parametrize(
    ("message", "finish", "expected"),
    [
        ({"content": None, "reasoning": "hmm"}, "stop", ""),
        ({"content": None, "reasoning_content": "hmm"}, "stop", ""),
        ({"content": None, "tool_calls": [{"id": "1"}]}, "tool_calls", ""),
        ({"content": None, "tool_calls": [{"id": "1"}]}, "length", ""),
        ({"content": None, "refusal": "no"}, "stop", ""),
        ({"content": "partial"}, "length", "partial"),
        ({"content": ""}, "stop", ""),
        ({"content": None, "reasoning": "hmm"}, "length", "Truncated"),
        ({"content": ""}, "length", "Truncated"),
        ({"content": None}, "content_filter", "ContentFiltered"),
        ({"content": "half"}, "content_filter", "ContentFiltered"),
        ({"content": None}, "stop", "EmptyContent"),
        ({"content": 5}, "stop", "EmptyContent"),
    ],
)
def test_completions_without_text(message: dict[str, object], finish: str, expected: str) -> None:
    outcome = outcome_from_reply(HttpReply(200, {}, _completion(message, finish)))
    if isinstance(outcome, AttemptSuccess):
        assert outcome.text == expected
        return
    assert outcome.error_type == expected
    assert not outcome.retryable
    if expected == "Truncated":
        assert "max_tokens" in outcome.message and "max_completion_tokens" in outcome.message
        assert outcome.raw is not None and outcome.raw["choices"][0]["message"] == message


GOOD = json.dumps({"choices": [{"message": {"content": "hi"}}], "usage": {"total_tokens": 3}})


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (GOOD.encode(), "hi"),  # the common case: the C scanner, straight from the text
        (b"  \n" + GOOD.encode() + b"\r\n", "hi"),  # whitespace around: json.loads
        (b"\xef\xbb\xbf" + GOOD.encode(), "hi"),  # a UTF-8 BOM: json.loads
        (GOOD.encode("utf-16"), "hi"),  # UTF-16 JSON: json.loads
        (GOOD.encode() + b" {}", "MalformedResponse"),  # extra data after the object
        (GOOD.encode()[:-1], "MalformedResponse"),  # cut short
        (b"\xff" + GOOD.encode(), "MalformedResponse"),  # not UTF-8, no BOM
    ],
)
def test_a_2xx_body_is_decoded_as_json_loads_would(body: bytes, expected: str) -> None:
    """The fast path (one JSON value from the first character to the last) and the
    rest (json.loads) agree: same text, same failures; the raw answer reads the same."""
    outcome = outcome_from_reply(HttpReply(200, {}, body))
    if expected == "MalformedResponse":
        assert isinstance(outcome, AttemptError) and outcome.error_type == expected
        assert "not JSON" in outcome.message, outcome.message
        return
    assert isinstance(outcome, AttemptSuccess) and outcome.text == expected
    assert outcome.total_tokens == 3
    assert dict(outcome.raw) == json.loads(GOOD)
