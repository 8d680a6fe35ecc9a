"""What one HTTP attempt ends as: a success or an error, decided once where the
answer (or the transport's exception) is classified (``_transport``), read by the
request path (retry or not) and, as an :data:`AttemptKind`, by flow control.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeAlias

from minimallm._policy.ratelimit import RateLimitInfo

__all__ = ["AttemptError", "AttemptKind", "AttemptOutcome", "AttemptSuccess", "attempt_kind"]


@dataclass(frozen=True, slots=True)
class AttemptSuccess:
    """A 2xx answer whose ``choices[0].message.content`` is a string."""

    text: str
    raw: Mapping[str, Any]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None
    rate: RateLimitInfo | None = None


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Anything else. ``retryable`` and ``overload`` are decided once, where the
    outcome is made (``_transport``), from the policy tables. ``excused``: the attempt
    was the client's own probe of a server it believes down (an outage); it does not
    count against MAX_ATTEMPTS."""

    error_type: str
    message: str
    retryable: bool
    overload: bool = False
    status: int | None = None
    body_snippet: str | None = None
    retry_after_s: float | None = None
    rate: RateLimitInfo | None = None
    excused: bool = False


AttemptOutcome: TypeAlias = AttemptSuccess | AttemptError

AttemptKind: TypeAlias = Literal["ok", "overload", "failed", "unreachable", "timeout", "broken"]
"""How flow control sees an attempt: ``ok``; ``overload`` (429/502/503/504); ``failed``
(any other answer: an error status, a malformed body); ``unreachable`` (no connection:
refused, DNS, connect timeout, proxy); ``timeout`` (no answer within TIMEOUT_S);
``broken`` (the connection broke mid-way). The first three are *answers*."""

_UNREACHABLE = frozenset({"ConnectError", "ProxyError"})


def attempt_kind(outcome: AttemptOutcome) -> AttemptKind:
    """The flow-control view of ``outcome``."""
    if isinstance(outcome, AttemptSuccess):
        return "ok"
    if outcome.overload:
        return "overload"
    if outcome.error_type in _UNREACHABLE:
        return "unreachable"
    if outcome.error_type == "TimeoutError":
        return "timeout"
    if outcome.status is not None:
        return "failed"
    return "broken"
