"""A complete HTTP answer made an attempt outcome (SPEC §3.4, §8), by the rows of the
one table (``_outcome.classify``). Never raises for anything in the answer.

A 2xx body is a success when ``choices[0].message.content`` is a string, or null
beside a tool call, a refusal or reasoning (``reasoning`` or ``reasoning_content``);
then the text is ``""``. Otherwise, and not retried: ``finish_reason:
"content_filter"`` is ``ContentFiltered``; ``finish_reason: "length"`` with no
content and no tool call is ``Truncated`` (its ``raw`` keeps the reasoning);
anything else without text is ``EmptyContent``. A body that is not a completion at
all is a retried ``MalformedResponse``. The success path reads only what it needs
(``choices[0]``, ``usage``); every other field of the answer is read from ``raw``
when somebody asks (``MinimaLlmResponse``'s properties).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from minimallm._http.reply import HttpReply
from minimallm._lazy_json import LazyJson
from minimallm._outcome.attempts import AttemptError, AttemptOutcome, AttemptSuccess
from minimallm._outcome.classify import (
    CONTENT_FILTERED,
    EMPTY_CONTENT,
    MALFORMED_RESPONSE,
    TRUNCATED,
    Row,
    named_answer_row,
    status_row,
)
from minimallm._outcome.explain import explanation, explanation_from_json
from minimallm._policy.ratelimit import RateLimitInfo, parse_rate_limit_headers
from minimallm._policy.retry import parse_retry_after

_NO_USAGE: Mapping[str, Any] = MappingProxyType({})
"""A success's ``usage`` when its body had none (parsed: nothing to read later)."""

__all__ = ["BODY_KEEP_CHARS", "outcome_from_reply"]

BODY_KEEP_CHARS = 4096
"""How much of a server's body an AttemptError keeps (decoded). More than a failure
shows (``_redact.SNIPPET_CHARS``, 300): the runtime redacts the key *before* it cuts
to that, so a key echoed across the cut is still found whole (``_redact.snippet``)."""


def outcome_from_reply(
    reply: HttpReply, *, wall_clock: Callable[[], float] = time.time
) -> AttemptOutcome:
    """Classify a complete HTTP answer. The message of an error carries the server's
    own explanation when it gives one (``HTTP 404: The model 'x' does not exist``,
    see ``_outcome.explain``)."""
    status = reply.status
    rate = _rate_info(reply.headers, wall_clock)
    if 200 <= status < 300:
        return _parse_success(reply, rate)
    body = reply.body
    row = named_answer_row(status, body) or status_row(status)
    retry_after = parse_retry_after(reply.headers, now_wall=wall_clock()) if row.retryable else None
    why = explanation(body)
    message = f"HTTP {status}: {why}" if why else f"HTTP {status}"
    if row.error_type != "HTTPError":
        message = f"{row.error_type}: {message}{_ADVICE.get(row.error_type, '')}"
    return row.error(message, status, _snippet(body), retry_after, rate)


_ADVICE = {
    "QuotaExceeded": " (the account's quota or billing limit is reached: retrying cannot help)",
    "ContextLengthExceeded": " (shorten the prompt or lower max_tokens)",
}


def _rate_info(headers: Mapping[str, str], wall_clock: Callable[[], float]) -> RateLimitInfo | None:
    """The answer's ``x-ratelimit-*`` headers; a look at the raw head first, so an
    answer without them (most servers) costs no header parsing."""
    mentions = getattr(headers, "mentions", None)
    if mentions is not None and not mentions(b"x-ratelimit-"):
        return None
    return parse_rate_limit_headers(headers, now_wall=wall_clock())


def _snippet(body: bytes) -> str:
    return body[: BODY_KEEP_CHARS * 4].decode("utf-8", "replace")[:BODY_KEEP_CHARS]


_SCAN: Callable[[str, int], tuple[Any, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
"""The C scanner ``json.loads`` ends in, called directly on an answer that is one JSON
value from its first character to its last (nearly every answer): ``json.loads`` on
bytes first guesses the encoding and skips whitespace (~1.5 µs per answer)."""


def _decode(body: bytes) -> tuple[Any, str | None]:
    """The decoded body, and its text when it is UTF-8 (else None); raises as
    ``json.loads`` does."""
    try:
        text = body.decode("utf-8")
        data, end = _SCAN(text, 0)
        if end == len(text):
            return data, text
    except (ValueError, StopIteration):
        pass  # not the common case: json.loads says what is wrong, as before
    return json.loads(body), None


def _parse_success(reply: HttpReply, rate: RateLimitInfo | None) -> AttemptOutcome:
    try:
        data, text = _decode(reply.body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return _bad_body(reply, MALFORMED_RESPONSE, f"2xx body is not JSON: {exc}")
    except RecursionError:
        return _bad_body(reply, MALFORMED_RESPONSE, "2xx body is JSON nested too deep")
    except MemoryError:  # a body under the size cap that still cannot be decoded
        return _bad_body(reply, MALFORMED_RESPONSE, "2xx body is too large to decode")
    if type(data) is not dict:
        return _bad_body(reply, MALFORMED_RESPONSE, "2xx body is not a JSON object")
    choices = data.get("choices")
    if type(choices) is not list or not choices:
        why = explanation_from_json(data)  # some proxies answer 200 with an "error"
        text = "2xx body has no 'choices'" + (f": {why}" if why else "")
        return _bad_body(reply, MALFORMED_RESPONSE, text)
    first = choices[0]
    if type(first) is dict:
        message = first.get("message")
        finish = first.get("finish_reason")
    else:
        message = finish = None
    content = message.get("content") if type(message) is dict else None
    if type(content) is not str or not content or finish == "content_filter":
        failed = _without_text(reply, data, message, content, finish)
        if failed is not None:
            return failed
        content = ""
    usage = data.get("usage")
    raw: Mapping[str, Any] = _keep_raw(reply.body, data) if text is None else LazyJson(text)
    if type(usage) is dict:
        return AttemptSuccess(
            content,
            raw,
            _int_or_none(usage.get("prompt_tokens")),
            _int_or_none(usage.get("completion_tokens")),
            _int_or_none(usage.get("total_tokens")),
            rate,
            usage,
        )
    return AttemptSuccess(content, raw, rate=rate, usage=_NO_USAGE)


def _without_text(
    reply: HttpReply, data: dict[str, Any], message: object, content: object, finish: object
) -> AttemptError | None:
    """The failure of a completion without usable text, or None when it is a success
    with ``text == ""`` (content null beside a tool call, a refusal or reasoning)."""
    if finish == "content_filter":
        return _bad_body(
            reply,
            CONTENT_FILTERED,
            "the server's content filter stopped the answer (finish_reason 'content_filter')",
            data,
        )
    msg: dict[str, Any] = message if isinstance(message, dict) else {}
    tool_calls = msg.get("tool_calls") or msg.get("function_call")
    if (content is None or content == "") and finish == "length" and not tool_calls:
        return _bad_body(
            reply,
            TRUNCATED,
            "the answer was cut at its token limit before any content (finish_reason "
            "'length'): raise max_tokens (or max_completion_tokens); a reasoning model "
            "may spend it all on reasoning, which the failure's raw keeps",
            data,
        )
    if content is None and (
        tool_calls
        or isinstance(msg.get("refusal"), str)
        or isinstance(msg.get("reasoning"), str)
        or isinstance(msg.get("reasoning_content"), str)
    ):
        return None
    if isinstance(content, str):
        return None  # "" without a length cut: a success with empty text, as before
    kind = "null" if content is None else type(content).__name__
    return _bad_body(
        reply,
        EMPTY_CONTENT,
        f"choices[0].message.content is {kind}, not text (and no tool call, refusal or reasoning)",
    )


def _keep_raw(body: bytes, data: dict[str, Any]) -> Mapping[str, Any]:
    """The body as lazily decoded text (a quarter of the memory of ``data``)."""
    try:
        return LazyJson(body.decode("utf-8-sig"))  # a BOM is not part of the JSON text
    except UnicodeDecodeError:  # UTF-16/32 JSON: rare enough to keep decoded
        return data


def _int_or_none(value: object) -> int | None:
    # type(), not isinstance: a bool is no count, and json makes no other int subclass
    return value if type(value) is int else None


def _bad_body(
    reply: HttpReply, row: Row, message: str, data: dict[str, Any] | None = None
) -> AttemptError:
    raw = None if data is None else _keep_raw(reply.body, data)
    return row.error(message, reply.status, _snippet(reply.body), raw=raw)
