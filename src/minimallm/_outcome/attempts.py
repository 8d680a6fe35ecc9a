"""What one HTTP attempt ends as: a success or an error, decided once where the
answer (or the transport's exception) is classified (``_outcome.classify``: one row
gives the error type, retryable, overload and flow-control kind together), read by
the request path (retry or not) and, as its :data:`AttemptKind`, by flow control.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from minimallm._frozen import fast_init
from minimallm._policy.ratelimit import RateLimitInfo

__all__ = ["AttemptError", "AttemptKind", "AttemptOutcome", "AttemptSuccess"]

AttemptKind: TypeAlias = Literal["ok", "overload", "failed", "unreachable", "timeout", "broken"]
"""How flow control sees an attempt: ``ok``; ``overload`` (429/502/503/504, not a
quota); ``failed`` (any other answer: an error status, a malformed body, a proxy or a
certificate that said no for good); ``unreachable`` (no connection: refused, DNS,
connect timeout, proxy down); ``timeout`` (no answer within TIMEOUT_S); ``broken``
(the connection broke mid-way, or nothing was sent). The first three are *answers*."""


@fast_init  # one per attempt: see _frozen.py
@dataclass(frozen=True, slots=True)
class AttemptSuccess:
    """A 2xx completion: ``choices[0].message.content`` a string, or null beside a
    tool call, a refusal or reasoning (then ``text`` is ``""``)."""

    text: str
    raw: Mapping[str, Any]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    rate: RateLimitInfo | None = None

    @property
    def kind(self) -> AttemptKind:
        """Always ``"ok"``."""
        return "ok"


@fast_init  # one per attempt: see _frozen.py
@dataclass(frozen=True, slots=True)
class AttemptError:
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
