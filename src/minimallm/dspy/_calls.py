"""How one DSPy LM call reaches the backend, whatever DSPy version serves it.

Shared by the DSPy 3.4 engine (``_lm``) and the DSPy 3.0-3.3 ``forward`` LM
(``_legacy``): request ids, the per-unit-of-work :class:`CallTrace`, and which way a
synchronous call goes:

* on a thread started by ``trio.to_thread.run_sync``: back into that trio run with
  ``trio.from_thread.run(backend.generate, ...)`` (same runtime, cancelled with the
  task waiting for the thread);
* on a thread with a running event loop (a notebook cell calling ``predictor(...)``
  under asyncio, or a synchronous call inside ``trio.run``): minimallm's background
  trio thread serves ``backend.generate`` while this thread waits. The loop is blocked
  for the call's duration, as with DSPy's own LM: that is what a synchronous call
  inside a loop asks for. Under trio the caller's run is blocked, so the background
  thread serves it with its own runtime of the backend (connections, cache handle);
* anywhere else: ``backend.generate_sync`` (minimallm's trio thread serves it).

Both thread-crossing paths need a backend served by minimallm's runtime (one with
``generate_sync``, such as ``OpenAIMinimaLlm``); any other backend is refused with a
:class:`~minimallm.UsageError` pointing to ``await predictor.acall(...)``.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import trio

from minimallm import _bridge
from minimallm._context import refresh_number, set_last_cached
from minimallm._errors import UsageError
from minimallm._progress.calls import CallCounter
from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, MinimaLlmResult

__all__ = [
    "CallTrace",
    "agenerate",
    "failure_of",
    "generate_blocking",
    "loop_library",
    "next_request_id",
    "record",
    "request_tag",
]

_request_seq = itertools.count(1)


@dataclass(slots=True)
class CallTrace:
    """What the LM calls made under one :func:`request_tag` did.

    Shared by reference with worker threads (contexts are copied, this object is
    not), so counts made in a DSPy thread are seen by the task waiting for it.
    ``calls``: LM calls made; ``cached``: answers served from minimallm's cache;
    ``failure``: the last request that failed, if any; ``counter``: the batch's count
    of LM calls (its progress shows them), or None.
    """

    tag: str
    calls: int = 0
    cached: int = 0
    failure: MinimaLlmFailure | None = None
    counter: CallCounter | None = None

    def next_request_id(self) -> str:
        """``<tag>:c<n>``, numbering this tag's LM calls from 1."""
        self.calls += 1
        if self.counter is not None:
            self.counter.start()
        return f"{self.tag}:c{self.calls}"


_trace: ContextVar[CallTrace | None] = ContextVar("minimallm_dspy_trace", default=None)


@contextmanager
def request_tag(tag: str, counter: CallCounter | None = None) -> Iterator[CallTrace]:
    """Name the LM calls made inside the block ``<tag>:c1``, ``<tag>:c2`` … (their
    request ids, seen in failures and logs) and count them in the yielded trace (and
    in ``counter``, a batch's count of LM calls)."""
    trace = CallTrace(tag, counter=counter)
    token = _trace.set(trace)
    try:
        yield trace
    finally:
        _trace.reset(token)


def next_request_id() -> str:
    """The id of the next LM call: ``<tag>:c<n>`` under :func:`request_tag`, else
    ``dspy-<n>`` numbered per process."""
    trace = _trace.get()
    return trace.next_request_id() if trace is not None else f"dspy-{next(_request_seq)}"


def loop_library() -> str | None:
    """The event loop running on this thread ("trio" or "asyncio"), or None."""
    if _bridge.trio_token_here() is not None:
        return "trio"
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return None
    return "asyncio"


def _in_trio_worker_thread() -> bool:
    # check_cancelled raises trio.Cancelled when the waiting task was cancelled:
    # then nothing new should start, and Cancelled unwinds DSPy (a BaseException).
    try:
        trio.from_thread.check_cancelled()
    except RuntimeError:
        return False
    return True


def generate_blocking(backend: Any, req: MinimaLlmRequest) -> MinimaLlmResult:
    """Answer ``req`` from synchronous code (see the module docstring for the ways)."""
    force = refresh_number()  # the re-ask's number (run_dspy_batch), 0: none
    if _in_trio_worker_thread():
        generate = functools.partial(backend.generate, req, force_refresh=force)
        result: MinimaLlmResult = trio.from_thread.run(generate)
        return result
    sync = getattr(backend, "generate_sync", None)
    if sync is None:
        raise UsageError(
            f"{type(backend).__name__} has no generate_sync(); call DSPy with "
            "`await predictor.acall(...)` from asyncio instead"
        )
    if loop_library() is not None:
        # This thread's loop cannot serve the call while it waits for it: the
        # background trio thread runs the backend's (trio-native) generate instead.
        generate = functools.partial(backend.generate, req, force_refresh=force)
        result = _bridge.call_blocking(generate, allow_running_loop=True)
        return result
    result = sync(req, force_refresh=force)
    return result


async def agenerate(backend: Any, req: MinimaLlmRequest) -> MinimaLlmResult:
    """Answer ``req`` from async code (asyncio, or trio for a trio-aware backend)."""
    result: MinimaLlmResult = await backend.generate(req, force_refresh=refresh_number())
    return result


def record(result: MinimaLlmResult) -> MinimaLlmResponse | MinimaLlmFailure:
    """Note the result in the current trace and in ``set_last_cached``."""
    trace = _trace.get()
    if trace is not None and trace.counter is not None:
        trace.counter.end(result)
    if isinstance(result, MinimaLlmFailure):
        if trace is not None:
            trace.failure = result
        return result
    set_last_cached(result.cached)
    if trace is not None and result.cached:
        trace.cached += 1
    return result


def failure_of(exc: BaseException) -> MinimaLlmFailure | None:
    """The :class:`MinimaLlmFailure` behind an error a DSPy program raised (DSPy wraps
    minimallm's error, so the chain of causes is searched), or None."""
    seen: BaseException | None = exc
    while seen is not None:
        failure = getattr(seen, "minimallm_failure", None)
        if isinstance(failure, MinimaLlmFailure):
            return failure
        seen = seen.__cause__
    return None
