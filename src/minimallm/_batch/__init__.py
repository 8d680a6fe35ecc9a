"""Batches: the engine (``engine``), what an item produces (``items``), when a batch
gives up (``budget``), results as a stream (``stream``) or a list (``collect``), and the
two kinds of batch: requests (``requests``) and any async function (``callables``)."""

from minimallm._batch.callables import run_batched_callable, stream_batched_callable
from minimallm._batch.items import PROGRAMMING_ERRORS, ItemResult
from minimallm._batch.stream import AsyncioBatchStream, SyncBatchStream, TrioBatchStream
from minimallm._progress import Progress

__all__ = [
    "PROGRAMMING_ERRORS",
    "AsyncioBatchStream",
    "ItemResult",
    "Progress",
    "SyncBatchStream",
    "TrioBatchStream",
    "run_batched_callable",
    "stream_batched_callable",
]
