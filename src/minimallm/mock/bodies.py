"""The JSON bodies the mock server answers (pure functions, OpenAI-shaped)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from minimallm._http.server import render_response

__all__ = [
    "SHAPE_ERRORS",
    "completion_body",
    "error_body",
    "error_response",
    "models_body",
    "seconds_text",
    "word_count",
]


_COMPACT = json.JSONEncoder(separators=(",", ":"))
"""``json.dumps(..., separators=(",", ":"))`` without a new encoder per answer."""


def seconds_text(seconds: float) -> str:
    """A ``Retry-After`` value in seconds: ``1.0`` -> ``"1"``, ``0.5`` -> ``"0.5"``."""
    return f"{seconds:g}"


def word_count(text: object) -> int:
    """Whitespace word count of a string (0 for anything else): the mock's "tokens"."""
    return len(text.split()) if isinstance(text, str) else 0


def error_body(status: int, message: str, code: str | None = None) -> bytes:
    """OpenAI's error shape: ``{"error": {"message", "type", "code"}}``; ``code`` (e.g.
    ``"insufficient_quota"``) sets both ``type`` and ``code`` (default: ``mock_error``
    and the status)."""
    error: dict[str, object] = {"message": message, "type": "mock_error", "code": status}
    if code is not None:
        error.update(type=code, code=code)
    return json.dumps({"error": error}).encode()


def error_response(
    status: int,
    message: str,
    keep_alive: bool,
    headers: tuple[tuple[str, str], ...] = (),
    code: str | None = None,
) -> bytes:
    """A whole HTTP response carrying ``error_body(status, message, code)`` and ``headers``."""
    body = error_body(status, message, code)
    return render_response(status, body, keep_alive=keep_alive, extra_headers=headers)


def models_body(model: str) -> bytes:
    """The ``GET /v1/models`` answer listing the one served model."""
    entry = {"id": model, "object": "model", "created": 0, "owned_by": "minimallm-mock"}
    return json.dumps({"object": "list", "data": [entry]}).encode()


SHAPE_ERRORS: dict[str, tuple[int, bytes]] = {
    "quota": (
        429,
        json.dumps(
            {
                "error": {
                    "message": "You exceeded your current quota, please check your plan "
                    "and billing details.",
                    "type": "insufficient_quota",
                    "param": None,
                    "code": "insufficient_quota",
                }
            }
        ).encode(),
    ),
    "context_length": (
        400,
        json.dumps(
            {
                "error": {
                    "message": "This model's maximum context length is 4096 tokens. "
                    "However, you requested 5000 tokens. Please reduce the length of the "
                    "messages or completion.",
                    "type": "invalid_request_error",
                    "param": "messages",
                    "code": "context_length_exceeded",
                }
            }
        ).encode(),
    ),
}
"""The error answers of the ``quota`` and ``context_length`` shapes (OpenAI's bodies)."""

_REASONING = "Let me think about this step by step."


def completion_body(
    request: Mapping[str, Any],
    text: str | None,
    *,
    number: int,
    default_model: str,
    with_choices: bool = True,
    deterministic: bool = False,
    shape: str | None = None,
) -> bytes:
    """A ``chat.completion`` answer with ``text`` as the assistant content.

    ``model`` echoes the request's model (else ``default_model``); usage counts words:
    prompt = all message contents, completion = ``text``. ``with_choices=False`` leaves
    ``choices`` out (the ``nochoices`` fault); ``text=None`` gives ``content: null``.
    ``deterministic``: ``created`` is 0 and the id is derived from the request, not
    from ``number``, so the same request always gets the same bytes (tests compare
    whole output files of separate runs). The request's ``n`` gives that many choices
    (the same text) and ``logprobs: true`` a logprob per word (``top_logprobs``
    alternatives each); ``shape`` one of ``faults.SHAPES`` (the 200 ones here).
    """
    messages = request.get("messages", [])
    prompt = sum(word_count(m.get("content")) for m in messages if isinstance(m, dict))
    completion = word_count(text)
    model = request.get("model")
    answer_id, created = f"chatcmpl-mock-{number}", int(time.time())
    if deterministic:
        canonical = json.dumps(request, sort_keys=True, separators=(",", ":")).encode()
        answer_id = "chatcmpl-mock-" + hashlib.blake2b(canonical, digest_size=8).hexdigest()
        created = 0
    out: dict[str, Any] = {
        "id": answer_id,
        "object": "chat.completion",
        "created": created,
        "model": model if isinstance(model, str) else default_model,
    }
    n = request.get("n")
    count = n if type(n) is int and 1 <= n <= 128 else 1
    reasoning = 0
    if with_choices:
        choices = []
        for index in range(count):
            choice, reasoning = _choice(index, text, shape, request)
            choices.append(choice)
        out["choices"] = choices
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion * count + reasoning,
        "total_tokens": prompt + completion * count + reasoning,
    }
    if reasoning:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    out["usage"] = usage
    return _COMPACT.encode(out).encode()


def _choice(
    index: int, text: str | None, shape: str | None, request: Mapping[str, Any]
) -> tuple[dict[str, Any], int]:
    """One choice in ``shape``, and the reasoning tokens it spent."""
    message: dict[str, Any] = {"role": "assistant", "content": text}
    finish, reasoning = "stop", 0
    if shape in ("reasoning", "reasoning_content", "reasoning_only", "length"):
        name = "reasoning_content" if shape == "reasoning_content" else "reasoning"
        message[name] = _REASONING
        reasoning = word_count(_REASONING)
        if shape in ("reasoning_only", "length"):
            message["content"] = None
        if shape == "length":
            finish = "length"
    elif shape == "tool_call":
        message["content"] = None
        arguments = json.dumps({"text": text or ""})
        call = {"name": "answer", "arguments": arguments}
        message["tool_calls"] = [{"id": f"call_{index}", "type": "function", "function": call}]
        finish = "tool_calls"
    elif shape == "refusal":
        message["content"] = None
        message["refusal"] = "I can't help with that."
    elif shape == "content_filter":
        message["content"] = None
        finish = "content_filter"
    choice: dict[str, Any] = {"index": index, "message": message, "finish_reason": finish}
    if request.get("logprobs") is True and isinstance(message["content"], str):
        top = request.get("top_logprobs")
        alternatives = top if type(top) is int and 0 <= top <= 20 else 0
        choice["logprobs"] = {
            "content": [
                {
                    "token": word,
                    "logprob": -0.1 * (i + 1),
                    "top_logprobs": [
                        {"token": f"{word}{k}", "logprob": -1.0 - k} for k in range(alternatives)
                    ],
                }
                for i, word in enumerate(message["content"].split())
            ]
        }
    return choice, reasoning
