"""The values that cross the public API: requests, responses, failures.

All are frozen, slotted dataclasses: cheap to create by the million, safe to share
between tasks and threads, and picklable (for multiprocessing users). None of them
ever holds the API key.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, runtime_checkable

from minimallm._lazy_json import LazyJson, decode_on_read, stored

__all__ = [
    "AsyncMinimaLlmBackend",
    "MinimaLlmFailure",
    "MinimaLlmRequest",
    "MinimaLlmResponse",
    "MinimaLlmResult",
]


@dataclass(frozen=True, slots=True)
class MinimaLlmRequest:
    """One chat-completion call.

    ``messages`` are sent as given (every key of every message is kept);
    ``temperature`` and ``max_tokens`` only when not None; ``extra`` is merged at the
    top level of the payload (``top_p``, ``stop``, ``response_format`` ...).
    """

    request_id: str
    messages: Sequence[Mapping[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    extra: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class MinimaLlmResponse:
    """A successful completion.

    ``cached`` is True when the answer came from the prompt cache (no HTTP call).
    Token counts are filled when the server reports ``usage``; ``raw`` is the server's
    JSON body as a plain ``dict`` (``json.dumps`` and pickle take it as is). It is kept
    as text and decoded on first read: a large batch holds every result, and most
    callers read only ``text``.
    """

    request_id: str
    text: str
    raw: Mapping[str, Any] | None = None
    cached: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class MinimaLlmFailure:
    """A request that did not succeed: returned, never raised.

    ``attempt_timestamps`` are the monotonic times (seconds) each attempt was
    actually sent; ``status`` is the HTTP status (408 for a timeout, None when no
    HTTP answer arrived); ``body_snippet`` is at most 300 characters of the body.
    """

    request_id: str
    error_type: str
    message: str
    attempts: int
    status: int | None = None
    body_snippet: str | None = None
    timeout_s: float | None = None
    attempt_timestamps: tuple[float, ...] = ()

    def format_attempts(self) -> str:
        """Send times relative to the first attempt, e.g. ``"[+0.0s, +1.2s, +3.5s]"``."""
        if not self.attempt_timestamps:
            return "[]"
        t0 = self.attempt_timestamps[0]
        return "[" + ", ".join(f"+{t - t0:.1f}s" for t in self.attempt_timestamps) + "]"


MinimaLlmResult: TypeAlias = MinimaLlmResponse | MinimaLlmFailure
"""What ``generate`` returns: a response or a failure, never an exception."""


_RAW = decode_on_read(MinimaLlmResponse, "raw")
_PLAIN_FIELDS = tuple(f.name for f in dataclasses.fields(MinimaLlmResponse) if f.name != "raw")


def replace_response(result: MinimaLlmResult, **changes: Any) -> MinimaLlmResult:
    """``dataclasses.replace`` that leaves a response's ``raw`` undecoded (a cache hit
    or a shared answer handed to another caller must not pay for decoding it)."""
    if not isinstance(result, MinimaLlmResponse):
        return dataclasses.replace(result, **changes)
    fields = {name: getattr(result, name) for name in _PLAIN_FIELDS}
    fields["raw"] = stored(_RAW, result)
    fields.update(changes)
    return MinimaLlmResponse(**fields)


def raw_json_text(response: MinimaLlmResponse, *, ensure_ascii: bool = True) -> str | None:
    """The server's JSON body as text, for the cache: its own bytes while ``raw`` is
    unread, else the dict re-encoded; None without a body."""
    raw = stored(_RAW, response)
    if isinstance(raw, LazyJson):
        return raw.text
    if raw is None:
        return None
    return json.dumps(dict(raw), separators=(",", ":"), ensure_ascii=ensure_ascii)


@runtime_checkable
class AsyncMinimaLlmBackend(Protocol):
    """Anything that can answer a :class:`MinimaLlmRequest` and be closed."""

    async def generate(
        self, req: MinimaLlmRequest, *, force_refresh: bool = False
    ) -> MinimaLlmResult:
        """Answer one request (a failure is returned, not raised)."""
        ...

    async def aclose(self) -> None:
        """Release connections and flush pending work."""
        ...
