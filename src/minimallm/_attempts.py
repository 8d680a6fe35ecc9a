"""What one HTTP attempt ends as: a success or an error, decided once where the
answer (or the transport's exception) is classified (``_transport``), and read by
the request path (retry or not) and by Admission (an overload feeds the cooldown).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

__all__ = ["AttemptError", "AttemptOutcome", "AttemptSuccess"]


@dataclass(frozen=True, slots=True)
class AttemptSuccess:
    """A 2xx answer whose ``choices[0].message.content`` is a string."""

    text: str
    raw: Mapping[str, Any]
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    total_tokens: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptError:
    """Anything else. ``retryable`` and ``overload`` are decided once, where the
    outcome is made (``_transport``), from the policy tables."""

    error_type: str
    message: str
    retryable: bool
    overload: bool = False
    status: int | None = None
    body_snippet: str | None = None
    retry_after_s: float | None = None


AttemptOutcome: TypeAlias = AttemptSuccess | AttemptError
