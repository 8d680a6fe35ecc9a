"""Between the OpenAI wire format and minimallm's values (pure functions, no I/O).

A client's request body becomes a :class:`~minimallm.MinimaLlmRequest`
(:func:`parse_chat_request`); the backend's result becomes a status and a body
(:func:`answer_of`); an answer becomes server-sent events for a streaming client
(:func:`sse_events`).

Decisions:

- ``messages``, ``temperature`` and ``max_tokens`` go to their fields, every other key to
  ``extra`` (sent as given), except ``stream`` and ``stream_options``, which only shape
  the answer to the client: upstream is always asked without streaming, so one answer
  serves every caller of a single flight and the cache.
- ``model``: the client's, unless the server forces its own; absent, or the configured
  one, means the configured model (so the cache key is the one ``run-batch`` uses). A
  different model rides on ``MinimaLlmRequest.model`` when that field exists, else in
  ``extra`` (which the payload merges last and the cache key includes).
- A failure keeps the upstream status and, when the body kept with it is a JSON object,
  that body; otherwise an OpenAI-style error body. A failure without an HTTP error
  status (connection refused, a malformed 200) is 502, a timeout 504, a request that
  cannot be sent 400.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from minimallm._requests import check_request
from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResult, raw_json_text

__all__ = [
    "ChatCall",
    "ClientError",
    "answer_of",
    "error_body",
    "parse_chat_request",
    "sse_events",
]

_FIELDS = frozenset({"messages", "temperature", "max_tokens", "model"})
_ANSWER_SHAPE = frozenset({"stream", "stream_options"})
_HAS_MODEL_FIELD = "model" in {f.name for f in dataclasses.fields(MinimaLlmRequest)}


class ClientError(Exception):
    """The client's request cannot be served: answer ``status`` with an OpenAI-style
    error body naming what is wrong."""

    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status = status
        self.kind = kind


@dataclass(frozen=True, slots=True)
class ChatCall:
    """One client call: the request for the backend and how to answer (``stream``:
    as server-sent events; ``include_usage``: a last chunk with ``usage``)."""

    request: MinimaLlmRequest
    stream: bool
    include_usage: bool


def error_body(message: str, kind: str, code: str | None = None) -> bytes:
    """An OpenAI-style error body: ``{"error": {"message", "type", "param", "code"}}``."""
    error = {"message": message, "type": kind, "param": None, "code": code}
    return json.dumps({"error": error}, ensure_ascii=False).encode("utf-8")


def parse_chat_request(
    body: bytes, *, request_id: str, configured_model: str, force_model: bool
) -> ChatCall:
    """The backend request of a ``/v1/chat/completions`` body, or :class:`ClientError`
    naming the culprit (not JSON, not an object, a bad field)."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ClientError(f"the request body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ClientError(f"the request body must be a JSON object, got {type(data).__name__}")
    stream = data.get("stream", False)
    if stream is not None and not isinstance(stream, bool):
        raise ClientError(f"'stream' must be true or false, got {stream!r}")
    options = data.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise ClientError("'stream_options' must be an object")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ClientError(f"'model' must be a string, got {type(model).__name__}")
    extra = {k: v for k, v in data.items() if k not in _FIELDS and k not in _ANSWER_SHAPE}
    fields: dict[str, Any] = {}
    if model and not force_model and model != configured_model:
        if _HAS_MODEL_FIELD:
            fields["model"] = model
        else:
            extra["model"] = model
    request = MinimaLlmRequest(
        request_id=request_id,
        messages=data.get("messages"),  # type: ignore[arg-type]  # checked just below
        temperature=data.get("temperature"),
        max_tokens=data.get("max_tokens"),
        extra=extra or None,
        **fields,
    )
    problem = check_request(request)
    if problem is not None:
        raise ClientError(problem.removeprefix(f"request {request_id!r}: "))
    include = bool(options and options.get("include_usage"))
    return ChatCall(request, bool(stream), include)


def answer_of(result: MinimaLlmResult) -> tuple[int, bytes]:
    """The status and JSON body that answer ``result``: the upstream body with 200, or
    the failure's status and body (see the module docstring)."""
    if isinstance(result, MinimaLlmFailure):
        return _failure_answer(result)
    text = raw_json_text(result, ensure_ascii=False)
    if text is None:  # no body kept: rebuild the minimum a client reads
        minimal = {
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": result.text},
                    "finish_reason": "stop",
                }
            ],
        }
        text = json.dumps(minimal, ensure_ascii=False)
    return 200, text.encode("utf-8")


def _failure_answer(failure: MinimaLlmFailure) -> tuple[int, bytes]:
    status = failure.status
    if failure.error_type == "InvalidRequest":
        return 400, error_body(failure.message, "invalid_request_error")
    if failure.error_type == "TimeoutError":
        return 504, error_body(f"upstream: {failure.message}", "timeout")
    if status is None or status < 400:
        return 502, error_body(f"upstream: {failure.message}", "upstream_error")
    snippet = failure.body_snippet
    if snippet:
        try:
            parsed = json.loads(snippet)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict):
            return status, snippet.encode("utf-8")
    return status, error_body(f"upstream: {failure.message}", failure.error_type)


def sse_events(body: Mapping[str, Any], *, include_usage: bool) -> Iterator[bytes]:
    """A whole chat completion as ``chat.completion.chunk`` server-sent events: per
    choice one chunk with the role and the content (and tool calls), then one with the
    finish reason; with ``include_usage`` a last chunk with ``usage``; then ``[DONE]``."""
    base = {
        "id": body.get("id", "chatcmpl-minimallm"),
        "object": "chat.completion.chunk",
        "created": body.get("created", 0),
        "model": body.get("model", ""),
    }
    if "system_fingerprint" in body:
        base["system_fingerprint"] = body["system_fingerprint"]
    choices = body.get("choices")
    for i, choice in enumerate(choices if isinstance(choices, list) else []):
        if not isinstance(choice, dict):
            continue
        index = choice.get("index", i)
        message = choice.get("message")
        delta = _delta(message if isinstance(message, dict) else {})
        yield _event({**base, "choices": [_chunk_choice(index, delta, None)]})
        finish = choice.get("finish_reason") or "stop"
        yield _event({**base, "choices": [_chunk_choice(index, {}, finish)]})
    if include_usage:
        yield _event({**base, "choices": [], "usage": body.get("usage")})
    yield b"data: [DONE]\n\n"


def _delta(message: Mapping[str, Any]) -> dict[str, Any]:
    delta: dict[str, Any] = {"role": message.get("role", "assistant")}
    for key, value in message.items():
        if key == "role" or value is None:
            continue
        if key == "tool_calls" and isinstance(value, list):
            value = [
                {"index": n, **call} if isinstance(call, dict) else call
                for n, call in enumerate(value)
            ]
        delta[key] = value
    delta.setdefault("content", "")
    return delta


def _chunk_choice(index: object, delta: dict[str, Any], finish: object) -> dict[str, Any]:
    return {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}


def _event(obj: Mapping[str, Any]) -> bytes:
    return b"data: " + json.dumps(obj, ensure_ascii=False).encode("utf-8") + b"\n\n"
