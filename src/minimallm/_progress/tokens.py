"""The token counts of one answer beyond prompt and completion: cached and reasoning.

``usage.prompt_tokens_details.cached_tokens`` (prompt tokens the server's own prompt
cache served) and ``usage.completion_tokens_details.reasoning_tokens`` (completion
tokens spent thinking). They are read here, in one place, for the batch's progress and
its token budget, from the server's JSON body. A body is kept as text (a batch holds
every result), so the two counts are read from its text without decoding it (about a
third of a ``json.loads`` of an OpenAI-style body, measured on a loaded machine); the
response's own fields of the same name decode the whole body on first read.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeGuard

from minimallm._lazy_json import LazyJson
from minimallm._types import _RAW, MinimaLlmResponse

__all__ = ["detail_tokens", "usage_details"]

_USAGE = '"usage"'
# A count inside its details object (no nested object in between), e.g.
# "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 1920}
_CACHED = re.compile(r'"prompt_tokens_details"\s*:\s*\{[^{}]*?"cached_tokens"\s*:\s*(\d+)')
_REASONING = re.compile(
    r'"completion_tokens_details"\s*:\s*\{[^{}]*?"reasoning_tokens"\s*:\s*(\d+)'
)
_NONE: tuple[int | None, int | None] = (None, None)
_raw_of = _RAW.__get__  # what ``stored(_RAW, response)`` reads, read directly


def detail_tokens(response: MinimaLlmResponse) -> tuple[int | None, int | None]:
    """``(cached_tokens, reasoning_tokens)`` of ``response``; None where the server
    did not say."""
    # Not the response's own ``cached_tokens``/``reasoning_tokens``: those decode the
    # whole body on first read, and a batch's progress reads every answer. Called per
    # answer: the slot read without ``stored``'s frame, the common case (a body kept as
    # text that names neither count) in two substring scans.
    raw = _raw_of(response)  # without decoding a body kept as text
    if type(raw) is not LazyJson and not isinstance(raw, LazyJson):
        return usage_details(raw.get("usage") if isinstance(raw, Mapping) else None)
    text = raw.text
    if "cached_tokens" not in text and "reasoning_tokens" not in text:
        return _NONE
    found = _details_of_text(text)
    if found is None:  # not where expected: decode the whole body (rare)
        return usage_details(raw.get("usage"))
    return found


def usage_details(usage: object) -> tuple[int | None, int | None]:
    """``(cached_tokens, reasoning_tokens)`` from a decoded ``usage`` object."""
    if type(usage) is not dict and not isinstance(usage, Mapping):
        return _NONE
    prompt = usage.get("prompt_tokens_details")
    completion = usage.get("completion_tokens_details")
    if prompt is None and completion is None:  # the common case: no calls below
        return _NONE
    cached = prompt.get("cached_tokens") if _is_mapping(prompt) else None
    reasoning = completion.get("reasoning_tokens") if _is_mapping(completion) else None
    return _count(cached), _count(reasoning)


def _is_mapping(value: object) -> TypeGuard[Mapping[str, Any]]:
    return type(value) is dict or isinstance(value, Mapping)


def _details_of_text(text: str) -> tuple[int | None, int | None] | None:
    """The two counts from the top-level ``usage`` object of a JSON body without
    decoding it; None when ``usage`` cannot be found so. (Inside a string a key is
    escaped, ``\\"usage\\"``, so it is not taken for one. Servers put ``usage`` last,
    so the search runs from the end.)"""
    at = text.rfind(_USAGE)
    while at > 0 and text[at - 1] == "\\":
        at = text.rfind(_USAGE, 0, at)
    if at < 0:
        return None
    cached = _CACHED.search(text, at)
    reasoning = _REASONING.search(text, at)
    return (
        None if cached is None else int(cached[1]),
        None if reasoning is None else int(reasoning[1]),
    )


def _count(value: object) -> int | None:
    return value if type(value) is int else None
