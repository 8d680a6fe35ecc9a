"""What one item of a batch produced, in the terms the engine and the Monitor need.

An item is either a request (``run_batched``: the answer or failure of ``generate``)
or any value of a user's async function (``run_batched_callable``). Failures are
values; only programming errors (:data:`PROGRAMMING_ERRORS`) escape an item.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Generic, NamedTuple, TypeVar

from minimallm._progress.tokens import detail_tokens, usage_details
from minimallm._runtime.request import Traced
from minimallm._types import MinimaLlmFailure, MinimaLlmResponse
from minimallm.actors.monitor import ItemKind

__all__ = [
    "PROGRAMMING_ERRORS",
    "ItemResult",
    "callable_item",
    "exception_item",
    "response_item",
    "value_item",
]

T = TypeVar("T")
R = TypeVar("R")

PROGRAMMING_ERRORS: tuple[type[BaseException], ...] = (
    TypeError,
    NameError,
    AttributeError,
    SyntaxError,
    ImportError,
)
"""Raised by an item's function, these are bugs, not failures: the batch stops at
once and raises them (as themselves, with a note naming the item) instead of counting
them toward ``max_failures``."""


class ItemResult(NamedTuple, Generic[R]):
    """One item's value and what the Monitor needs to know about it (token counts:
    None where the server did not say; a cache hit used none; ``server_s``: the
    server's time for the attempt that answered, None when none did)."""

    value: R | None
    kind: ItemKind
    attempts: int = 0
    first_sent_at: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    failure: MinimaLlmFailure | None = None
    cached_tokens: int | None = None
    reasoning_tokens: int | None = None
    server_s: float | None = None


def response_item(traced: Traced) -> ItemResult[Any]:
    """ItemResult for what the request door answered: its result, attempts, when the
    first went out, ``server_s`` (see :class:`ItemResult`) and ``usage``, the answer's
    decoded ``usage`` when the parse held it (its token details are read there; None:
    read from the response's body, without decoding it)."""
    result, attempts, first_sent_at, server_s, usage = traced
    if isinstance(result, MinimaLlmFailure):
        return ItemResult(result, "failed", attempts, first_sent_at, failure=result)
    if result.cached:
        return ItemResult(result, "cached", attempts, first_sent_at)
    cached_tokens, reasoning_tokens = (
        detail_tokens(result) if usage is None else usage_details(usage)
    )
    return ItemResult(
        result,
        "ok",
        attempts,
        first_sent_at,
        result.prompt_tokens,
        result.completion_tokens,
        None,
        cached_tokens,
        reasoning_tokens,
        server_s,
    )


async def callable_item(
    index: int, call: Callable[[T], Awaitable[tuple[Any, bool]]], item: T
) -> ItemResult[Any]:
    """Run a user's function on one item; ``call`` returns ``(value, cached)`` (see
    ``reporting_cached``). Exceptions other than programming errors become failures."""
    try:
        value, cached = await call(item)
    except PROGRAMMING_ERRORS:
        raise
    except Exception as exc:
        return exception_item(index, exc)
    return value_item(value, cached)


def exception_item(index: int, exc: BaseException) -> ItemResult[Any]:
    """An item whose function raised: a failure value naming the item and the error."""
    failure = MinimaLlmFailure(
        request_id=f"item-{index}",
        error_type=type(exc).__name__,
        message=str(exc) or type(exc).__name__,
        attempts=0,
    )
    return ItemResult(failure, "failed", failure=failure)


def value_item(value: Any, cached: bool) -> ItemResult[Any]:
    """ItemResult for what a user's function returned."""
    if value is None:
        return ItemResult(None, "none")
    if isinstance(value, MinimaLlmFailure):
        return ItemResult(value, "failed", value.attempts, failure=value)
    if isinstance(value, MinimaLlmResponse):
        return response_item(Traced(value, 0, None))
    return ItemResult(value, "cached" if cached else "ok")
