"""What a server said went wrong, read from its error body (a pure function).

A failure's message names the server's own explanation when it gives one, so a person
can act on it: ``HTTP 404: The model 'x' does not exist`` rather than ``HTTP 404``.
The shapes recognised, first match wins:

- OpenAI (and vLLM, LiteLLM, OpenRouter): ``{"error": {"message": "..."}}``
- Ollama, TGI and others: ``{"error": "..."}``
- FastAPI (vLLM's validation errors): ``{"detail": "..."}`` or
  ``{"detail": [{"loc": [...], "msg": "..."}, ...]}``
- older vLLM and others: ``{"message": "..."}``
- a JSON string; plain text (its first line); an HTML error page (its ``<title>``).

Anything else (another JSON shape, binary garbage, a huge body) gives None: the
failure's ``body_snippet`` still shows the start of the body. The result is one line
without control characters, at most :data:`EXPLANATION_CHARS` long, cut without a
marker (a marker after a cut key would hide the piece from redaction, see
``_redact``). The key is not removed here: the runtime redacts every failure text.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["EXPLANATION_CHARS", "explanation", "explanation_from_json"]

EXPLANATION_CHARS = 1000
"""The longest explanation kept (the runtime shortens messages further)."""

MAX_PARSE_BYTES = 64 * 1024
"""Bodies larger than this are not decoded as JSON (an error body is small)."""

_TEXT_BYTES = 4096  # of a non-JSON body, only this much is looked at
# Patterns compiled on first use (re's cache): most runs explain no failure.
_CONTROL = r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+"
_SPACES = r"\s+"
_TITLE = r"(?is)<title[^>]*>(.*?)</title>"
_TAG = r"<[^>]*>"
_MAX_DETAILS = 3  # FastAPI validation errors listed


def explanation(body: bytes) -> str | None:
    """The server's own explanation in ``body``, or None (see the module doc)."""
    if not body or not body.strip():
        return None
    if len(body) <= MAX_PARSE_BYTES:
        try:
            data = json.loads(body)
        except (ValueError, RecursionError, MemoryError):
            pass  # not JSON: read as text below
        else:
            return explanation_from_json(data)
    return _from_text(body[:_TEXT_BYTES].decode("utf-8", "replace"))


def explanation_from_json(data: Any) -> str | None:
    """The explanation in an already decoded body (also used for a 2xx body that
    carries an ``error`` instead of ``choices``)."""
    if isinstance(data, str):
        return _clean(data)
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict):
        for key in ("message", "msg", "detail"):
            text = _clean(error.get(key))
            if text:
                return text
    text = _clean(error)
    if text:
        return text
    detail = data.get("detail")
    if isinstance(detail, list):
        return _clean("; ".join(filter(None, map(_fastapi_item, detail[:_MAX_DETAILS]))))
    if isinstance(detail, dict):
        return _clean(detail.get("message")) or _clean(detail.get("msg"))
    return _clean(detail) or _clean(data.get("message"))


def _fastapi_item(item: object) -> str | None:
    if not isinstance(item, dict) or not isinstance(item.get("msg"), str):
        return None
    loc = item.get("loc")
    where = ".".join(str(p) for p in loc) if isinstance(loc, list) else ""
    return f"{where}: {item['msg']}" if where else str(item["msg"])


def _from_text(text: str) -> str | None:
    if _looks_binary(text) or text.lstrip()[:1] in ("{", "[", '"'):
        return None  # garbage, or JSON too large (or broken) to read as JSON
    if text.lstrip()[:1] == "<":  # an HTML (or XML) error page: its title says it
        match = re.search(_TITLE, text)
        return _clean(re.sub(_TAG, " ", match.group(1))) if match else None
    for line in text.splitlines():
        cleaned = _clean(line)
        if cleaned:
            return cleaned
    return None


def _looks_binary(text: str) -> bool:
    bad = sum(1 for ch in text if ch == "\ufffd" or (ch < " " and ch not in "\t\r\n"))
    return bad * 10 > len(text)


def _clean(value: object) -> str | None:
    """One line, no control characters (a terminal escape from a server stays inert),
    at most EXPLANATION_CHARS; None for anything but non-blank text."""
    if not isinstance(value, str):
        return None
    text = re.sub(_SPACES, " ", re.sub(_CONTROL, " ", value[: EXPLANATION_CHARS * 2])).strip()
    return text[:EXPLANATION_CHARS] or None
