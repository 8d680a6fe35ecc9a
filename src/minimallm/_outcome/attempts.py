"""What one HTTP attempt ends as: a success or an error, decided once where the
answer (or the transport's exception) is classified (``_outcome.classify``: one row
gives the error type, retryable, overload and flow-control kind together), read by
the request path (retry or not) and, as its :data:`AttemptKind`, by flow control.

Both are NamedTuples (frozen, built once per attempt): ~0.4 µs to build where a frozen
dataclass took 0.6-0.9 µs even with ``_frozen.fast_init``, and far less to define when
``minimallm`` is imported.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal, NamedTuple, TypeAlias

from minimallm._policy.ratelimit import RateLimitInfo

__all__ = ["AttemptError", "AttemptKind", "AttemptOutcome", "AttemptSuccess"]

AttemptKind: TypeAlias = Literal["ok", "overload", "failed", "unreachable", "timeout", "broken"]
"""How flow control sees an attempt: ``ok``; ``overload`` (429/502/503/504, not a
quota); ``failed`` (any other answer: an error status, a malformed body, a proxy or a
certificate that said no for good); ``unreachable`` (no connection: refused, DNS,
connect timeout, proxy down); ``timeout`` (no answer within TIMEOUT_S); ``broken``
(the connection broke mid-way, or nothing was sent). The first three are *answers*."""


class AttemptSuccess(NamedTuple):
    """A 2xx completion: ``choices[0].message.content`` a string, or null beside a
    tool call, a refusal or reasoning (then ``text`` is ``""``)."""

    text: str
    raw: Mapping[str, Any]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    rate: RateLimitInfo | None = None
    usage: Mapping[str, Any] | None = None
    """The body's decoded ``usage`` object, as the parse held it (empty: the body had
    none; None: not known here): a batch reads the answer's token details from it
    instead of scanning the body again."""

    @property
    def kind(self) -> AttemptKind:
        """Always ``"ok"``."""
        return "ok"


class AttemptError(NamedTuple):
    """Anything else, made by a row of the one table (``_outcome.classify.Row.error``):
    ``error_type``, ``retryable``, ``overload`` and ``kind`` are that row's. ``raw``:
    the body of a 2xx answer that is a failure (``Truncated`` keeps the reasoning).
    ``excused``: the attempt was the client's own probe of a server it believes down
    (an outage); it does not count against MAX_ATTEMPTS."""

    error_type: str
    message: str
    retryable: bool
    overload: bool
    kind: AttemptKind
    status: int | None = None
    body_snippet: str | None = None
    retry_after_s: float | None = None
    rate: RateLimitInfo | None = None
    raw: Mapping[str, Any] | None = None
    excused: bool = False


AttemptOutcome: TypeAlias = AttemptSuccess | AttemptError
