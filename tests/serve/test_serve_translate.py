"""The wire format <-> minimallm values (pure)."""

from __future__ import annotations

import json

import pytest

from minimallm import MinimaLlmFailure, MinimaLlmResponse
from minimallm.serve.translate import ClientError, answer_of, parse_chat_request, sse_events

MSGS = [{"role": "user", "content": "hi"}]


def parse(body: object, *, force: bool = False) -> object:
    raw = json.dumps(body).encode()
    return parse_chat_request(raw, request_id="r1", configured_model="m", force_model=force)


def test_fields_and_extra() -> None:
    call = parse(
        {"model": "m", "messages": MSGS, "temperature": 0.5, "max_tokens": 7, "top_p": 0.9,
         "stream": True, "stream_options": {"include_usage": True}}
    )  # fmt: skip
    req = call.request  # type: ignore[attr-defined]
    assert req.messages == MSGS and req.temperature == 0.5 and req.max_tokens == 7
    assert req.extra == {"top_p": 0.9}  # stream options shape the answer only
    assert call.stream and call.include_usage  # type: ignore[attr-defined]


def _model_sent(req: object) -> object:
    extra = getattr(req, "extra", None) or {}
    return getattr(req, "model", None) or extra.get("model")


def test_client_model_is_sent_unless_forced() -> None:
    other = parse({"model": "other", "messages": MSGS}).request  # type: ignore[attr-defined]
    assert _model_sent(other) == "other"
    forced = parse({"model": "other", "messages": MSGS}, force=True)
    assert _model_sent(forced.request) is None  # type: ignore[attr-defined]
    same = parse({"model": "m", "messages": MSGS}).request  # type: ignore[attr-defined]
    assert _model_sent(same) is None and same.extra is None  # run-batch's cache key


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (b"{nope", "not JSON"),
        (b"[1]", "JSON object"),
        (json.dumps({"messages": []}).encode(), "messages"),
        (json.dumps({"messages": MSGS, "max_tokens": 0}).encode(), "max_tokens"),
        (json.dumps({"messages": MSGS, "model": 3}).encode(), "'model'"),
        (json.dumps({"messages": MSGS, "stream": "yes"}).encode(), "'stream'"),
    ],
)
def test_bad_bodies_are_named(body: bytes, words: str) -> None:
    with pytest.raises(ClientError, match=words) as info:
        parse_chat_request(body, request_id="r1", configured_model="m", force_model=False)
    assert info.value.status == 400


def test_answer_is_the_upstream_body() -> None:
    raw = {"id": "x", "choices": [{"message": {"role": "assistant", "content": "yo"}}]}
    status, body = answer_of(MinimaLlmResponse("r", "yo", raw=raw))
    assert status == 200 and json.loads(body) == raw


@pytest.mark.parametrize(
    ("failure", "status", "kind"),
    [
        (MinimaLlmFailure("r", "HTTPError", "quota", 1, 429, '{"error":{"type":"q"}}'), 429, "q"),
        (MinimaLlmFailure("r", "HTTPError", "boom", 1, 500, "<html>"), 500, "HTTPError"),
        (MinimaLlmFailure("r", "ConnectError", "refused", 3), 502, "upstream_error"),
        (MinimaLlmFailure("r", "MalformedResponse", "bad", 1, 200), 502, "upstream_error"),
        (MinimaLlmFailure("r", "TimeoutError", "slow", 1, 408), 504, "timeout"),
        (MinimaLlmFailure("r", "InvalidRequest", "bad", 0), 400, "invalid_request_error"),
    ],
)
def test_failures_keep_status_and_body(failure: MinimaLlmFailure, status: int, kind: str) -> None:
    got_status, body = answer_of(failure)
    assert got_status == status
    assert json.loads(body)["error"]["type"] == kind


def test_sse_carries_the_whole_answer() -> None:
    raw = {
        "id": "c1", "created": 5, "model": "m",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                     "finish_reason": "length"}],
        "usage": {"total_tokens": 3},
    }  # fmt: skip
    events = list(sse_events(raw, include_usage=True))
    assert events[-1] == b"data: [DONE]\n\n"
    chunks = [json.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["id"] == "c1" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text == "hello"
    assert chunks[1]["choices"][0]["finish_reason"] == "length"
    assert chunks[2]["usage"] == {"total_tokens": 3} and chunks[2]["choices"] == []
    assert len(list(sse_events(raw, include_usage=False))) == 3
