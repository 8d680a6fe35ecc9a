"""LM calls made by a batch's items' own code, counted for its progress.

``run_batched`` sees every HTTP attempt of its items; a batch of user functions does
not (``run_dspy_batch``: each item is a DSPy program making LM calls of its own), so
its progress said ``0/50 … ETA ?`` for minutes while calls were going on. Whoever makes
those calls (minimallm.dspy) counts them here, from any thread or event loop; the
batch's Monitor reads the counts at each progress report.
"""

from __future__ import annotations

import threading
from typing import NamedTuple

from minimallm._progress.tokens import detail_tokens
from minimallm._types import MinimaLlmFailure, MinimaLlmResponse, MinimaLlmResult

__all__ = ["CallCounter", "CallCounts"]


class CallCounts(NamedTuple):
    """What :class:`CallCounter` counted so far (see its fields)."""

    started: int = 0
    ended: int = 0
    cached: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    tokens_reported: bool = False

    @property
    def running(self) -> int:
        """Calls started and not ended."""
        return max(0, self.started - self.ended)


class CallCounter:
    """Thread-safe counts of LM calls: started, ended (of which cached, failed), and
    the tokens their answers used (cache hits used none)."""

    __slots__ = ("_counts", "_lock")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = CallCounts()

    def __repr__(self) -> str:
        c = self._counts
        return f"<CallCounter started={c.started} ended={c.ended}>"

    def start(self) -> None:
        """A call is about to go out."""
        with self._lock:
            c = self._counts
            self._counts = c._replace(started=c.started + 1)

    def end(self, result: MinimaLlmResult) -> None:
        """A call ended with ``result``."""
        cached_t = reasoning_t = None
        live = isinstance(result, MinimaLlmResponse) and not result.cached
        if live:
            assert isinstance(result, MinimaLlmResponse)
            cached_t, reasoning_t = detail_tokens(result)
        with self._lock:
            c = self._counts
            prompt = completion = 0
            reported = c.tokens_reported
            if live:
                assert isinstance(result, MinimaLlmResponse)
                prompt, completion = result.prompt_tokens or 0, result.completion_tokens or 0
                reported = reported or result.prompt_tokens is not None
            self._counts = CallCounts(
                c.started,
                c.ended + 1,
                c.cached + (isinstance(result, MinimaLlmResponse) and result.cached),
                c.failed + isinstance(result, MinimaLlmFailure),
                c.prompt_tokens + prompt,
                c.completion_tokens + completion,
                c.cached_tokens + (cached_t or 0),
                c.reasoning_tokens + (reasoning_t or 0),
                reported,
            )

    def counts(self) -> CallCounts:
        """The counts now (an immutable snapshot)."""
        return self._counts
