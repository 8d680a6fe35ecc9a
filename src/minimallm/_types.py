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

from minimallm._frozen import fast_init
from minimallm._lazy_json import LazyJson, decode_on_read, stored

__all__ = [
    "AsyncMinimaLlmBackend",
    "MinimaLlmChoice",
    "MinimaLlmFailure",
    "MinimaLlmRequest",
    "MinimaLlmResponse",
    "MinimaLlmResult",
]


@fast_init  # a batch builds these by the million: see _frozen.py
@dataclass(frozen=True, slots=True)
class MinimaLlmRequest:
    """One chat-completion call.

    ``messages`` are sent as given (every key of every message is kept);
    ``temperature`` and ``max_tokens`` only when not None; ``extra`` is merged at the
    top level of the payload as given (``top_p``, ``stop``, ``response_format``,
    ``max_completion_tokens``, ``n``, ``logprobs``, ``reasoning_effort``, ``seed``
    ...). ``model`` overrides the configured model for this request (sent, and part of
    the cache key). ``sample``: a non-zero number is part of the cache key and never
    sent, so k samples of one prompt (``sample=1..k``, with a temperature) are k cache
    entries; 0 (the default) leaves the key as it always was.
    """

    request_id: str
    messages: Sequence[Mapping[str, Any]]
    temperature: float | None = None
    max_tokens: int | None = None
    extra: Mapping[str, Any] | None = None
    model: str | None = None
    sample: int = 0


@dataclass(frozen=True, slots=True)
class MinimaLlmChoice:
    """One choice of an answer (``n`` > 1 gives several): its ``text`` (``""`` when the
    server sent ``content: null``), ``reasoning`` (the server's ``reasoning`` or
    ``reasoning_content``), ``tool_calls`` and ``logprobs`` as the server sent them,
    ``refusal`` and ``finish_reason`` (``"stop"``, ``"length"``, ``"tool_calls"`` ...)."""

    text: str
    reasoning: str | None = None
    tool_calls: Any = None
    refusal: str | None = None
    finish_reason: str | None = None
    logprobs: Any = None


@fast_init  # a batch builds these by the million: see _frozen.py
@dataclass(frozen=True, slots=True)
class MinimaLlmResponse:
    """A successful completion.

    ``cached`` is True when the answer came from the prompt cache (no HTTP call).
    Token counts are filled when the server reports ``usage``; ``raw`` is the server's
    JSON body as a plain ``dict`` (``json.dumps`` and pickle take it as is). It is kept
    as text and decoded on first read: a large batch holds every result, and most
    callers read only ``text``.

    The rest of the answer is read from ``raw`` when asked for, so it costs nothing
    until then (and a cached answer gives the same): ``finish_reason``,
    ``reasoning``, ``tool_calls``, ``refusal`` (choice 0's), ``model`` (the model
    that answered), ``cached_tokens`` and ``reasoning_tokens`` (from ``usage``'s
    details) and ``choices``, one :class:`MinimaLlmChoice` per choice. ``text`` is
    ``""`` for an answer with ``content: null`` beside a tool call, a refusal or
    reasoning. Without ``raw`` they are None (``choices`` holds ``text`` alone).
    """

    request_id: str
    text: str
    raw: Mapping[str, Any] | None = None
    cached: bool = False
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None

    @property
    def choices(self) -> tuple[MinimaLlmChoice, ...]:
        """Every choice of the answer, in order; choice 0's text is ``text``."""
        raw = self.raw
        found = raw.get("choices") if raw else None
        if type(found) is not list or not found:
            return (MinimaLlmChoice(self.text),)
        choices = [_choice(c) for c in found]
        choices[0] = dataclasses.replace(choices[0], text=self.text)
        return tuple(choices)

    @property
    def finish_reason(self) -> str | None:
        """Why choice 0 ended (``"stop"``, ``"length"``, ``"tool_calls"`` ...)."""
        value = _first_choice(self.raw).get("finish_reason")
        return value if isinstance(value, str) else None

    @property
    def reasoning(self) -> str | None:
        """Choice 0's reasoning (the server's ``reasoning`` or ``reasoning_content``)."""
        return _reasoning(_message(_first_choice(self.raw)))

    @property
    def tool_calls(self) -> Any:
        """Choice 0's ``tool_calls`` as the server sent them (None without any)."""
        return _message(_first_choice(self.raw)).get("tool_calls")

    @property
    def refusal(self) -> str | None:
        """Choice 0's refusal, when the model refused."""
        value = _message(_first_choice(self.raw)).get("refusal")
        return value if isinstance(value, str) else None

    @property
    def model(self) -> str | None:
        """The model that answered, as the server names it."""
        raw = self.raw
        value = raw.get("model") if raw else None
        return value if isinstance(value, str) else None

    @property
    def cached_tokens(self) -> int | None:
        """``usage.prompt_tokens_details.cached_tokens`` (prompt tokens the server had
        cached), when reported."""
        return _usage_detail(self.raw, "prompt_tokens_details", "cached_tokens")

    @property
    def reasoning_tokens(self) -> int | None:
        """``usage.completion_tokens_details.reasoning_tokens``, when reported."""
        return _usage_detail(self.raw, "completion_tokens_details", "reasoning_tokens")


_NOTHING: Mapping[str, Any] = {}


def _first_choice(raw: Mapping[str, Any] | None) -> Mapping[str, Any]:
    choices = raw.get("choices") if raw else None
    if type(choices) is list and choices and isinstance(choices[0], dict):
        return choices[0]
    return _NOTHING


def _message(choice: Mapping[str, Any]) -> Mapping[str, Any]:
    message = choice.get("message")
    return message if isinstance(message, dict) else _NOTHING


def _reasoning(message: Mapping[str, Any]) -> str | None:
    value = message.get("reasoning")
    if not isinstance(value, str):
        value = message.get("reasoning_content")
    return value if isinstance(value, str) else None


def _choice(choice: object) -> MinimaLlmChoice:
    if not isinstance(choice, dict):
        return MinimaLlmChoice("")
    message = _message(choice)
    content = message.get("content")
    refusal = message.get("refusal")
    finish = choice.get("finish_reason")
    return MinimaLlmChoice(
        content if isinstance(content, str) else "",
        _reasoning(message),
        message.get("tool_calls"),
        refusal if isinstance(refusal, str) else None,
        finish if isinstance(finish, str) else None,
        choice.get("logprobs"),
    )


def _usage_detail(raw: Mapping[str, Any] | None, group: str, name: str) -> int | None:
    usage = raw.get("usage") if raw else None
    details = usage.get(group) if isinstance(usage, dict) else None
    value = details.get(name) if isinstance(details, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


@fast_init  # a batch builds these by the million: see _frozen.py
@dataclass(frozen=True, slots=True)
class MinimaLlmFailure:
    """A request that did not succeed: returned, never raised.

    ``attempt_timestamps`` are the monotonic times (seconds) each attempt was
    actually sent; ``status`` is the HTTP status (408 for a timeout, None when no
    HTTP answer arrived); ``body_snippet`` is at most 300 characters of the body.
    ``raw``: the whole body of a 2xx answer that is a failure (``Truncated`` keeps
    the reasoning the model spent its tokens on; ``ContentFiltered``), else None.

    ``error_type`` names the class: ``HTTPError`` (``status`` says which),
    ``QuotaExceeded`` (quota or billing exhausted: a batch stops at the first),
    ``ContextLengthExceeded``, ``ContentFiltered``, ``Truncated``, ``EmptyContent``,
    ``MalformedResponse``, ``TimeoutError``, ``ConnectError``, ``ConnectionError``,
    ``ProxyError``, ``TLSVerificationError`` ... (README, "Error types").
    """

    request_id: str
    error_type: str
    message: str
    attempts: int
    status: int | None = None
    body_snippet: str | None = None
    timeout_s: float | None = None
    attempt_timestamps: tuple[float, ...] = ()
    raw: Mapping[str, Any] | None = None

    def format_attempts(self) -> str:
        """Send times relative to the first attempt, e.g. ``"[+0.0s, +1.2s, +3.5s]"``."""
        if not self.attempt_timestamps:
            return "[]"
        t0 = self.attempt_timestamps[0]
        return "[" + ", ".join(f"+{t - t0:.1f}s" for t in self.attempt_timestamps) + "]"


MinimaLlmResult: TypeAlias = MinimaLlmResponse | MinimaLlmFailure
"""What ``generate`` returns: a response or a failure, never an exception."""


_RAW = decode_on_read(MinimaLlmResponse, "raw")
decode_on_read(MinimaLlmFailure, "raw")
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
