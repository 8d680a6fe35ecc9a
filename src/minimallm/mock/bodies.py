"""The JSON bodies the mock server answers (pure functions, OpenAI-shaped)."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Mapping
from typing import Any

from minimallm._http.server import render_response

__all__ = [
    "completion_body",
    "error_body",
    "error_response",
    "models_body",
    "seconds_text",
    "word_count",
]


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


def completion_body(
    request: Mapping[str, Any],
    text: str | None,
    *,
    number: int,
    default_model: str,
    with_choices: bool = True,
    deterministic: bool = False,
) -> bytes:
    """A ``chat.completion`` answer with ``text`` as the assistant content.

    ``model`` echoes the request's model (else ``default_model``); usage counts words:
    prompt = all message contents, completion = ``text``. ``with_choices=False`` leaves
    ``choices`` out (the ``nochoices`` fault); ``text=None`` gives ``content: null``.
    ``deterministic``: ``created`` is 0 and the id is derived from the request, not
    from ``number``, so the same request always gets the same bytes (tests compare
    whole output files of separate runs).
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
    if with_choices:
        message = {"role": "assistant", "content": text}
        out["choices"] = [{"index": 0, "message": message, "finish_reason": "stop"}]
    out["usage"] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    return json.dumps(out, separators=(",", ":")).encode()
