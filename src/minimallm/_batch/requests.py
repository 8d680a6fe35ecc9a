"""A batch of requests: each item is one ``generate`` through the session (cache and
runtime), with the cache read in bulk ahead of the runners."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from minimallm._batch.engine import Deliver, run_batch
from minimallm._batch.items import ItemResult, response_item
from minimallm._config.settings import BatchConfig
from minimallm._progress import ProgressSink
from minimallm._requests import request_label
from minimallm._runtime.session import Session
from minimallm._types import MinimaLlmRequest

__all__ = ["run_request_batch"]


def describe_request(index: int, req: object) -> str:
    """``request 17 (id 'q17')``: how an exception's note names the item."""
    return request_label(index, getattr(req, "request_id", None))


async def run_request_batch(
    session: Session,
    requests: Iterable[MinimaLlmRequest],
    cfg: BatchConfig,
    *,
    force_refresh: int,
    deliver: Deliver,
    sink: ProgressSink,
    total: int | None,
    window: Any = None,
) -> None:
    """Answer every request (see ``_batch.engine``); the session's cache is flushed at
    the end, however the batch ends (shielded: a cancelled batch loses nothing)."""
    missed: dict[int, str] = {}  # keys of bulk misses, until their runner takes them

    async def one(index: int, req: MinimaLlmRequest, events: Any) -> ItemResult[Any]:
        traced = await session.generate_traced(
            req,
            force_refresh=force_refresh,
            missed_key=missed.pop(index, None),
            events=events,
            index=index,
        )
        return response_item(traced.result, traced.attempts, traced.first_sent_at)

    async def lookup(chunk: list[tuple[int, Any]]) -> dict[int, ItemResult[Any]]:
        found = await session.lookup_many([req for _, req in chunk])
        hits: dict[int, ItemResult[Any]] = {}
        for (index, _), (key, hit) in zip(chunk, found, strict=True):
            if hit is None:
                missed[index] = key
            else:
                hits[index] = ItemResult(hit, "cached")
        return hits

    use_cache = session.cache is not None and not force_refresh
    try:
        await run_batch(
            requests,
            one,
            cfg,
            deliver=deliver,
            sink=sink,
            total=total,
            describe=describe_request,
            runtime=session.runtime.statistics,
            lookup=lookup if use_cache else None,
            window=window,
        )
    finally:
        await session.flush()
