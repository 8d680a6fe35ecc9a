"""The token counts of one answer beyond prompt and completion: cached and reasoning.

``usage.prompt_tokens_details.cached_tokens`` (prompt tokens the server's own prompt
cache served) and ``usage.completion_tokens_details.reasoning_tokens`` (completion
tokens spent thinking). They are read here, in one place, for the batch's progress and
its token budget: from the response's own fields when it has them, else from the
server's JSON body. A body is kept as text (a batch holds every result), so only its
``usage`` object is decoded, not the whole body again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from minimallm._lazy_json import LazyJson, stored
from minimallm._types import _RAW, MinimaLlmResponse

__all__ = ["detail_tokens", "usage_details"]

_DECODER = json.JSONDecoder()
_USAGE = '"usage"'
_NONE: tuple[int | None, int | None] = (None, None)
_ABSENT = object()


def detail_tokens(response: MinimaLlmResponse) -> tuple[int | None, int | None]:
    """``(cached_tokens, reasoning_tokens)`` of ``response``; None where the server
    did not say."""
    own = getattr(response, "cached_tokens", _ABSENT)  # the response's fields, once it has them
    if own is not _ABSENT:
        return _count(own), _count(getattr(response, "reasoning_tokens", None))
    raw = stored(_RAW, response)  # without decoding a body kept as text
    if not isinstance(raw, LazyJson):
        return usage_details(raw.get("usage") if isinstance(raw, Mapping) else None)
    text = raw.text
    if "cached_tokens" not in text and "reasoning_tokens" not in text:
        return _NONE
    usage = _usage_of_text(text)
    if usage is None:  # not where expected: decode the whole body (rare)
        usage = raw.get("usage")
    return usage_details(usage)


def usage_details(usage: object) -> tuple[int | None, int | None]:
    """``(cached_tokens, reasoning_tokens)`` from a decoded ``usage`` object."""
    if not isinstance(usage, Mapping):
        return _NONE
    prompt = usage.get("prompt_tokens_details")
    completion = usage.get("completion_tokens_details")
    cached = prompt.get("cached_tokens") if isinstance(prompt, Mapping) else None
    reasoning = completion.get("reasoning_tokens") if isinstance(completion, Mapping) else None
    return _count(cached), _count(reasoning)


def _usage_of_text(text: str) -> Mapping[str, Any] | None:
    """The top-level ``usage`` object of a JSON body, decoding only that object; None
    when it cannot be found so (the key inside a string is escaped: ``\\"usage\\"``).
    Servers put ``usage`` last, so the search runs from the end."""
    at = text.rfind(_USAGE)
    while at > 0 and text[at - 1] == "\\":
        at = text.rfind(_USAGE, 0, at)
    if at < 0:
        return None
    start = at + len(_USAGE)
    while start < len(text) and text[start] in " \t\r\n:":
        start += 1
    try:
        value, _ = _DECODER.raw_decode(text, start)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) and "prompt_tokens" in value else None


def _count(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
