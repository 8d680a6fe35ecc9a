"""A batch of requests: each item goes through the one request door
(:func:`minimallm._runtime.request.request`), with the cache read in bulk ahead of the
runners; a miss's key travels with its item (:class:`Missed`), so it is neither hashed
nor read twice."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable
from typing import Any, NamedTuple

import trio

from minimallm._batch.engine import Deliver, run_batch
from minimallm._batch.items import ItemResult, response_item
from minimallm._config.settings import BatchConfig
from minimallm._progress import ProgressSink
from minimallm._requests import request_label
from minimallm._runtime.request import Traced, request
from minimallm._runtime.serve import Runtime
from minimallm._types import MinimaLlmRequest
from minimallm.actors.messages import ItemJob

__all__ = ["Missed", "run_request_batch"]


class Missed(NamedTuple):
    """A request the bulk lookup did not find, with the key it missed under."""

    req: MinimaLlmRequest
    key: str


def _workers_run_items(runtime: Runtime) -> bool:
    """Whether the batch's items run in the Workers' tasks (else in runner tasks of
    their own, as a user's functions do). Not with TPM: a reservation may wait for
    other requests' tokens. Not with several endpoints: the replicas' flow control,
    tuned with runners, refused 2-3x more often in virtual time (515-749 refusals of
    6,000 where runners have 220, in 3 of 5 runs) with items in the Workers."""
    return runtime.tokens is None and len(runtime.endpoints) == 1


def describe_request(index: int, item: object) -> str:
    """``request 17 (id 'q17')``: how an exception's note names the item."""
    req = item.req if isinstance(item, Missed) else item
    return request_label(index, getattr(req, "request_id", None))


async def run_request_batch(
    runtime: Runtime,
    requests: Iterable[MinimaLlmRequest],
    cfg: BatchConfig,
    *,
    force_refresh: int,
    deliver: Deliver,
    sink: ProgressSink,
    total: int | None,
    window: Any = None,
) -> None:
    """Answer every request (see ``_batch.engine``); the cache is flushed at the end,
    however the batch ends (shielded: a cancelled batch loses nothing)."""

    def one(index: int, item: Any, events: Any, worker: Any, order: int) -> Awaitable[Traced]:
        # the door itself is the item's coroutine (no layer of its own here)
        if isinstance(item, Missed):
            req, key, refresh = item.req, item.key, 0
        else:
            req, key, refresh = item, None, force_refresh
        return request(
            runtime,
            req,
            force_refresh=refresh,
            missed_key=key,
            events=events,
            index=index,
            worker=worker,
            order=order,
        )

    life = runtime.life
    put = runtime.jobs.put

    def pool(job: ItemJob) -> None:
        """An item to the Workers, numbered as it comes (the Pacer serves older first)."""
        job.order = life.orders = life.orders + 1
        try:
            put(job)
        except trio.ClosedResourceError:
            raise life.closed_error() from None

    async def lookup(chunk: list[tuple[int, Any]]) -> list[tuple[int, Any, ItemResult[Any] | None]]:
        assert runtime.cache is not None
        found = await runtime.cache.lookup_many([req for _, req in chunk])
        return [
            (index, Missed(req, key), None)
            if hit is None
            else (index, req, ItemResult(hit, "cached"))
            for (index, req), (key, hit) in zip(chunk, found, strict=True)
        ]

    use_cache = runtime.cache is not None and not force_refresh
    try:
        await run_batch(
            requests,
            one,
            response_item,
            cfg,
            deliver=deliver,
            sink=sink,
            total=total,
            describe=describe_request,
            runtime=runtime.statistics,
            lookup=lookup if use_cache else None,
            window=window,
            pool=pool if _workers_run_items(runtime) else None,
        )
    finally:
        await runtime.flush()
