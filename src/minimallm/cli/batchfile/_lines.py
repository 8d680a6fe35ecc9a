"""One line of a ``run-batch`` input file: validated and turned into a request.

Two shapes are accepted, line by line (a file may mix them):

* the OpenAI Batch API's: ``{"custom_id", "method": "POST", "url":
  "/v1/chat/completions", "body": {"messages", "model"?, ...}}`` (no other keys);
* the simple one: ``{"custom_id" | "id", "messages", ...}``, every other key being a
  request field. An integer ``id`` is taken as its decimal text.

The body's ``messages`` become the request's messages, ``temperature`` and
``max_tokens`` its fields, ``model`` the request's own model (sent instead of the
run's; lines may name different models), and every other key goes into ``extra`` as
is (``top_p``, ``stop``, ``response_format``, ``max_completion_tokens`` ...). Each
problem is a :class:`LineError` whose message names the key at fault and what is
allowed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, NoReturn

from minimallm._types import MinimaLlmRequest

__all__ = ["CHAT_URL", "LineError", "ParsedLine", "check_line", "parse_line"]

CHAT_URL = "/v1/chat/completions"
"""The only ``url`` a Batch API line may name."""

_BATCH_KEYS = frozenset({"custom_id", "method", "url", "body"})
_OWN_FIELDS = frozenset({"model", "messages", "temperature", "max_tokens"})
_NUMBER = (int, float)  # exact types: a JSON true is not a temperature


class LineError(ValueError):
    """What is wrong with one line (the caller adds the line number)."""


@dataclass(frozen=True, slots=True)
class ParsedLine:
    """A valid line: its id, the model it names (None: none) and the request."""

    custom_id: str
    model: str | None
    request: MinimaLlmRequest


def _no_constant(name: str) -> NoReturn:
    raise LineError(f"{name} is not allowed in JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constant)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    return {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "an object",
    }.get(type(value), type(value).__name__)


def _show(value: object, limit: int = 60) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_line(raw: bytes) -> ParsedLine | None:
    """Parse one line (bytes, with or without its newline); None for a blank line.

    Raises :class:`LineError` for anything else that is not a valid request line.
    """
    parsed = _parse(raw, True)
    return parsed if parsed is None else ParsedLine(*parsed)  # type: ignore[arg-type]


def check_line(raw: bytes) -> tuple[str, str | None] | None:
    """:func:`parse_line` without building the request (pass 1 only needs to know the
    line is valid): ``(custom_id, model or None)``, or None for a blank line."""
    parsed = _parse(raw, False)
    return None if parsed is None else parsed[:2]


_Parsed = tuple[str, str | None, MinimaLlmRequest | None]


def _parse(raw: bytes, build: bool) -> _Parsed | None:
    if not raw or raw.isspace():
        return None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise LineError(
            f"not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})"
        ) from None
    body = text.rstrip("\r\n")  # a line cut short is an error at its end, not on "line 2"
    bom = len(body) - len(body := body.lstrip("\ufeff"))
    try:
        obj = _DECODER.decode(body)
    except json.JSONDecodeError as exc:
        column = bom + exc.pos + 1  # in characters, from the start of the line
        raise LineError(f"not JSON: {exc.msg} (column {column})") from None
    if type(obj) is not dict:
        raise LineError(f"not a JSON object but {_kind(obj)}")
    if "body" in obj or "method" in obj or "url" in obj:
        return _batch_api_line(obj, build)
    return _simple_line(obj, build)


def _batch_api_line(obj: dict[str, Any], build: bool) -> _Parsed:
    if not obj.keys() <= _BATCH_KEYS:
        key = next(k for k in obj if k not in _BATCH_KEYS)
        hint = " (put request fields inside 'body')" if key == "messages" else ""
        raise LineError(
            f"unknown key {_show(key)}{hint}: a Batch API line has custom_id, method, url and body"
        )
    custom_id = obj.get("custom_id")
    if type(custom_id) is not str or not custom_id:
        raise LineError(_id_problem("custom_id", custom_id, "a non-empty string"))
    method = obj.get("method")
    if method != "POST":
        raise LineError(f'"method" must be "POST", got {_show(method)}')
    url = obj.get("url")
    if url != CHAT_URL:
        raise LineError(
            f'"url" must be "{CHAT_URL}" (minimallm runs chat completions), got {_show(url)}'
        )
    body = obj.get("body")
    if type(body) is not dict:
        raise LineError(f'"body" must be a chat completion request (an object), got {_kind(body)}')
    return _request(custom_id, body, "body.", build)


def _simple_line(obj: dict[str, Any], build: bool) -> _Parsed:
    if "custom_id" in obj and "id" in obj:
        raise LineError('give "custom_id" or "id", not both')
    key = "custom_id" if "custom_id" in obj else "id"
    if key not in obj:
        raise LineError(
            'missing "custom_id" (or "id"): each line is {"custom_id", "messages", ...} '
            'or a Batch API request {"custom_id", "method", "url", "body"}'
        )
    value = obj.pop(key)
    if type(value) is int and key == "id":
        custom_id = str(value)
    elif type(value) is str and value:
        custom_id = value
    else:
        allowed = "a non-empty string or an integer" if key == "id" else "a non-empty string"
        raise LineError(_id_problem(key, value, allowed))
    return _request(custom_id, obj, "", build)


def _id_problem(key: str, value: object, allowed: str) -> str:
    if value is None:
        return f'missing "{key}" ({allowed})'
    return f'"{key}" must be {allowed}, got {_show(value)}'


def _request(custom_id: str, body: dict[str, Any], where: str, build: bool) -> _Parsed:
    messages = body.get("messages")
    _check_messages(messages, where)
    model = body.get("model")
    if model is not None:
        if type(model) is not str or not model.strip():
            raise LineError(f'"{where}model" must be a non-empty string, got {_show(model)}')
        model = model.strip()
    temperature = body.get("temperature")
    if temperature is not None and (type(temperature) not in _NUMBER or temperature < 0):
        raise LineError(f'"{where}temperature" must be a number >= 0, got {_show(temperature)}')
    max_tokens = body.get("max_tokens")
    if max_tokens is not None and (type(max_tokens) is not int or max_tokens < 1):
        raise LineError(f'"{where}max_tokens" must be an integer >= 1, got {_show(max_tokens)}')
    if body.get("stream") not in (None, False):
        raise LineError(f'"{where}stream" must be false or absent: minimallm reads whole answers')
    if not build:
        return custom_id, model, None
    extra = {k: v for k, v in body.items() if k not in _OWN_FIELDS}
    request = MinimaLlmRequest(
        custom_id,
        messages,  # type: ignore[arg-type]
        temperature,
        max_tokens,
        extra or None,
        model,
    )
    return custom_id, model, request


def _check_messages(messages: object, where: str) -> None:
    if type(messages) is not list or not messages:
        got = "missing" if messages is None else f"got {_show(messages)}"
        raise LineError(
            f'"{where}messages" must be a non-empty array of {{"role", "content"}} objects, {got}'
        )
    for i, message in enumerate(messages):
        if type(message) is dict:
            role = message.get("role")
            if type(role) is str and role and type(message.get("content")) is str:
                continue  # the common case, checked in full
        _check_message(message, f"{where}messages[{i}]")


def _check_message(message: object, at: str) -> None:
    if not isinstance(message, dict):
        raise LineError(f'"{at}" must be an object with role and content, got {_kind(message)}')
    role = message.get("role")
    if not isinstance(role, str) or not role:
        raise LineError(f'"{at}" needs a "role" (a non-empty string), got {_show(role)}')
    content = message.get("content")
    if isinstance(content, list):
        for j, part in enumerate(content):
            if not isinstance(part, dict):
                raise LineError(f'"{at}.content[{j}]" must be an object (a content part)')
    elif content is None:
        if role != "assistant":
            got = "missing" if "content" not in message else "null"
            raise LineError(f'"{at}" needs a "content" (text or content parts), {got}')
    elif not isinstance(content, str):
        raise LineError(f'"{at}.content" must be text or an array of parts, got {_kind(content)}')
