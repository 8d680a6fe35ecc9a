"""Keep the API key out of text that came from a server (pure functions).

A server may echo the key back (``"invalid key Bearer sk-..."``). Failures keep the
start of the server's body; if the key were cut in two by that limit, the part before
the cut would survive a search for the whole key. So the order is: redact the whole
key first, then cut, then redact a piece of the key that the cut (or an earlier cut,
e.g. the transport's) left at the end. The text never holds the key, nor a piece of
it of :data:`MIN_PIECE` characters or more.

The runtime calls :func:`snippet` on every text of a failure that came from a server
(the message and the body snippet), :func:`redacted_raw` on a failure's whole 2xx
body, and :func:`redact` on an answer before the cache stores it. They take one secret
or several (the key and a proxy's credentials).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from minimallm._lazy_json import LazyJson

__all__ = [
    "MESSAGE_CHARS",
    "MIN_PIECE",
    "REDACTED",
    "SNIPPET_CHARS",
    "Secrets",
    "redact",
    "redacted_raw",
    "snippet",
]

Secrets = str | Sequence[str] | None
"""One secret, several (each redacted alike), or none."""

REDACTED = "***"
"""What stands in for the key (or a piece of it)."""

SNIPPET_CHARS = 300
"""How much of a server's body a failure keeps (reference: first 300 characters)."""

MESSAGE_CHARS = 300
"""The longest failure message (the server's explanation included), with its marker."""

MIN_PIECE = 4
"""The shortest start of the key that is redacted where a text ends. Shorter starts
("s", "sk-") cannot be told from ordinary text and give nothing away."""


def redact(text: str, secret: Secrets) -> str:
    """``text`` with every whole occurrence of ``secret`` (or of each of several)
    replaced by ``***``, also as a JSON string would write it (``\\"``, ``\\\\``,
    ``\\/``). No secret: unchanged."""
    for one in _each(secret):
        for form in _forms(one):
            if form in text:
                text = text.replace(form, REDACTED)
    return text


def _each(secret: Secrets) -> Sequence[str]:
    if not secret:
        return ()
    return (secret,) if isinstance(secret, str) else [s for s in secret if s]


def _forms(secret: str) -> tuple[str, ...]:
    escaped = json.dumps(secret)[1:-1]
    return tuple(dict.fromkeys((secret, escaped, escaped.replace("/", "\\/"))))


def snippet(
    text: str | bytes, secret: Secrets, limit: int = SNIPPET_CHARS, *, marker: str = ""
) -> str:
    """The first ``limit`` characters of ``text`` (bytes decoded as UTF-8, bad bytes
    replaced), with the key redacted before the cut and any start of the key of at
    least :data:`MIN_PIECE` characters left at the end redacted too. ``marker``
    (e.g. ``"…"``) is appended when something was cut off (it counts toward
    ``limit``).
    """
    if isinstance(text, bytes):
        # a character is at most 4 bytes; more than that cannot reach the cut, except
        # through the key's own replacement, which shortens the text
        keep = (limit + max(map(len, _each(secret)), default=0)) * 4 + 4
        text = text[:keep].decode("utf-8", "replace")
    text = redact(text, secret)
    if len(text) > limit:
        text = text[: max(0, limit - len(marker))]
        return _redact_tail(text, secret) + marker
    return _redact_tail(text, secret)


def _redact_tail(text: str, secret: Secrets) -> str:
    """Redact the longest start of ``secret`` (>= MIN_PIECE characters) ending ``text``
    (of each secret in turn)."""
    for one in _each(secret):
        for size in range(min(len(one) - 1, len(text)), MIN_PIECE - 1, -1):
            if text.endswith(one[:size]):
                text = text[:-size] + REDACTED
                break
    return text


def redacted_raw(raw: Mapping[str, Any], secret: Secrets) -> Mapping[str, Any]:
    """A failure's whole 2xx body (``Truncated``) with the key (and any other secret)
    redacted: kept as lazily decoded text, like a response's ``raw``."""
    text = raw.text if isinstance(raw, LazyJson) else json.dumps(dict(raw))
    if any(form in text for one in _each(secret) for form in _forms(one)):
        return LazyJson(redact(text, secret))
    return raw if isinstance(raw, LazyJson) else LazyJson(text)
