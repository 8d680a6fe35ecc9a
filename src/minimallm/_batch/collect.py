"""A whole batch into one index-aligned list (``run_batched``): the engine delivering
straight into the list, and the partial results attached to whatever stops it."""

from __future__ import annotations

import contextlib
from typing import Any

from minimallm._batch.stream import EngineStarter

__all__ = ["collect"]


async def collect(start: EngineStarter, n: int) -> list[Any]:
    """Run the batch; one value per item, in input order. An exception that stops the
    batch carries the results so far as ``.results`` (None where an item never
    finished): :class:`BatchAbortedError`, :class:`BackendClosedError`, or the item
    function's own programming error."""
    results: list[Any] = [None] * n

    try:
        await start(results.__setitem__, None)
    except Exception as exc:
        with contextlib.suppress(AttributeError, TypeError):  # a class that refuses attributes
            exc.results = results  # type: ignore[attr-defined]
        raise
    return results
