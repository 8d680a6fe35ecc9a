"""The documented context variables (force_refresh, last_cached).

They let an adapter (DSPy) ask for a cache bypass, or learn whether an answer was
cached, without changing the signatures between the caller and ``generate``.
``generate`` reads them at call time, on the caller's side, and carries the value
inside its messages: long-lived actors cannot see a caller's context.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from contextvars import ContextVar, Token
from typing import Any, TypeVar

__all__ = [
    "get_force_refresh",
    "get_last_cached",
    "reset_force_refresh",
    "set_force_refresh",
    "set_last_cached",
]

T = TypeVar("T")
R = TypeVar("R")

_force_refresh: ContextVar[int] = ContextVar("minimallm_force_refresh", default=0)
_last_cached: ContextVar[bool] = ContextVar("minimallm_last_cached", default=False)


def set_force_refresh(force: bool | int) -> Token[int]:
    """Ask the next ``generate`` calls in this context to bypass the cache read.

    ``True`` is re-ask number 1; an int ``n`` > 1 is the n-th re-ask of the same
    request (``run_dspy_batch`` counts its parse re-asks this way): a request without
    a temperature then goes out with a seed and a temperature that rises with ``n``
    (``RETRY_TEMPERATURE_MAX``). Returns the token for :func:`reset_force_refresh`
    (call it in ``finally``).
    """
    return _force_refresh.set(max(0, int(force)) if type(force) is int else int(bool(force)))


def get_force_refresh() -> bool:
    """True when a cache bypass was requested in this context."""
    return _force_refresh.get() > 0


def refresh_number(force_refresh: bool | int = False) -> int:
    """The re-ask number of a call given ``force_refresh`` (an argument) and this
    context's :func:`set_force_refresh`: 0 when neither asks for a refresh, else the
    larger of the two (``True`` counts as 1)."""
    return max(int(force_refresh), _force_refresh.get())


def reset_force_refresh(token: Token[int]) -> None:
    """Restore the force-refresh flag to what it was before ``set_force_refresh``."""
    _force_refresh.reset(token)


def set_last_cached(cached: bool) -> None:
    """Record whether the last answer in this context came from the cache."""
    _last_cached.set(bool(cached))


def get_last_cached() -> bool:
    """Whether the last answer recorded in this context came from the cache."""
    return _last_cached.get()


def reporting_cached(
    fn: Callable[[T], Awaitable[R]],
) -> Callable[[T], Coroutine[Any, Any, tuple[R, bool]]]:
    """``fn`` returning ``(value, cached)``: whether the answer it used came from the
    cache, as ``get_last_cached()`` reads after it, in the same context (the batch
    runner counts cached items this way; under any event loop)."""

    async def call(item: T) -> tuple[R, bool]:
        set_last_cached(False)
        value = await fn(item)
        return value, get_last_cached()

    return call
