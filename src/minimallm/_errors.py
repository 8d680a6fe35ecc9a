"""The exception tree. Single-request failures are values (MinimaLlmFailure), not these.

MinimaLlmError
├── ConfigError (also ValueError)      bad configuration, raised at construction
├── InvalidRequestError (also ValueError)  a request that cannot be sent as it is
├── BackendClosedError                 use of a runtime after it was shut down
│   └── BackendFailedError             ... because one of its actors failed (a bug)
├── UsageError (also RuntimeError)     an entry point called where it cannot work
├── BatchAbortedError (also RuntimeError)  a batch exceeded max_failures
│   ├── TokenBudgetExceededError       ... or used MAX_TOTAL_TOKENS tokens
│   └── DSPyBatchAbortedError          ... a run_dspy_batch batch (also a DSPyBatchError)
├── DSPyBatchError (also RuntimeError) items of run_dspy_batch failed (minimallm.dspy)
├── CacheUnavailableError              the prompt cache cannot be opened or read
└── CacheWriteError                    a batch of answers could not be written
    └── CacheLockedError               ... because another process held the write lock

Warnings (nothing stops): CacheWarning (the cache is not used for a while) and
ConfigWarning (a setting that is probably not what was meant).

The runtime decides whether a cache error warns (:class:`CacheWarning`) or stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BackendClosedError",
    "BackendFailedError",
    "BatchAbortedError",
    "CacheLockedError",
    "CacheUnavailableError",
    "CacheWarning",
    "CacheWriteError",
    "ConfigError",
    "ConfigWarning",
    "DSPyBatchAbortedError",
    "DSPyBatchError",
    "InvalidRequestError",
    "MinimaLlmError",
    "TokenBudgetExceededError",
    "UsageError",
]


class MinimaLlmError(Exception):
    """Root of every exception minimallm raises on purpose."""


class ConfigError(MinimaLlmError, ValueError):
    """The configuration is invalid; the message names every bad setting at once."""


class InvalidRequestError(MinimaLlmError, ValueError):
    """A request that cannot be sent as it is (a wrong type, a value JSON cannot carry).

    The message names the request (``request 17 (id 'q17')``), the field and what is
    allowed; ``problem`` is the same without the request, ``index`` and
    ``request_id`` identify it when known. In a batch this is that item's failure
    (``error_type="InvalidRequest"``), not an exception.
    """

    def __init__(
        self,
        message: str,
        *,
        problem: str | None = None,
        index: int | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.problem = message if problem is None else problem
        self.index = index
        self.request_id = request_id


class BackendClosedError(MinimaLlmError):
    """The runtime serving this call was shut down while the call was waiting."""


class BackendFailedError(BackendClosedError):
    """The runtime stopped because one of its actors failed; the message names the
    actor and the error, ``__cause__`` is the original exception. Every caller that was
    waiting gets one, and so does every later call in the same trio run."""


class UsageError(MinimaLlmError, RuntimeError):
    """An entry point was called from a context where it cannot work (e.g. a
    synchronous call on the thread of a running event loop)."""


class BatchAbortedError(MinimaLlmError, RuntimeError):
    """A batch saw more than ``max_failures`` failures and stopped.

    ``results`` holds the partial results, index-aligned with the input (None where
    an item never finished); ``failures`` the last ``keep_failure_summaries``
    failures seen (:class:`~minimallm.MinimaLlmFailure` values, oldest first), the
    ones the message lists.
    """

    def __init__(self, message: str, results: Sequence[Any], failures: Sequence[Any]) -> None:
        super().__init__(message)
        self.results = list(results)
        self.failures = list(failures)


class TokenBudgetExceededError(BatchAbortedError):
    """A batch stopped because its answers used ``MAX_TOTAL_TOKENS`` tokens
    (``BatchConfig.max_total_tokens``; prompt plus completion, as the servers reported).

    Like any :class:`BatchAbortedError`, ``results`` holds the partial results;
    ``tokens_used`` is the count that stopped it; ``failures`` the last failures seen.
    """

    def __init__(
        self, message: str, results: Sequence[Any], failures: Sequence[Any], tokens_used: int
    ) -> None:
        super().__init__(message, results, failures)
        self.tokens_used = tokens_used


class DSPyBatchError(MinimaLlmError, RuntimeError):
    """Some items of a ``run_dspy_batch`` failed (raised by :mod:`minimallm.dspy`;
    defined here, so it is part of the one tree without importing DSPy).

    ``results`` is index-aligned with the input (annotated objects, or a
    :class:`~minimallm.MinimaLlmFailure` where an item failed); ``failures`` lists
    ``(index, failure)`` pairs.
    """

    def __init__(self, message: str, results: list[Any], failures: list[tuple[int, Any]]) -> None:
        super().__init__(message)
        self.results = results
        self.failures = failures


class DSPyBatchAbortedError(DSPyBatchError, BatchAbortedError):
    """A ``run_dspy_batch`` batch stopped early: more items failed (parse failures,
    failed requests) than ``max_failures`` allows. Both a :class:`DSPyBatchError` and
    a :class:`BatchAbortedError` (what such a batch raised before), so either
    ``except`` clause catches it.

    As a DSPyBatchError: ``results`` is index-aligned with the input (annotated
    objects, a :class:`~minimallm.MinimaLlmFailure` where an item failed, None where
    it never finished) and ``failures`` lists ``(index, failure)`` pairs of the items
    that failed before the stop.
    """

    def __init__(self, message: str, results: list[Any], failures: list[tuple[int, Any]]) -> None:
        BatchAbortedError.__init__(self, message, results, [f for _, f in failures])
        self.failures = failures


class CacheUnavailableError(MinimaLlmError):
    """The prompt cache cannot be opened or read.

    Raised for a ``cache_dir`` that is a file or cannot be created, a directory
    where the database cannot be created, a file that is not an SQLite database
    (never deleted nor overwritten), a table with the wrong columns, a read that
    fails (corruption, I/O error), a lock held elsewhere beyond the whole wait
    budget, and use after :meth:`~minimallm._cache.store.PromptCache.close`. The message
    names the path and the cause.
    """


class CacheWriteError(MinimaLlmError):
    """A batch of answers could not be written to the prompt cache.

    Raised by :meth:`~minimallm._cache.store.PromptCache.put_many` for a read-only database or
    directory, a full disk, an I/O error or a lock held elsewhere beyond the whole wait
    budget.
    The failed batch is rolled back as a whole; rows written before stay intact.
    """


class CacheLockedError(CacheWriteError):
    """Another connection (usually another process) held the prompt cache's write lock
    for the whole short wait a caller asked for (``put_many(..., lock_wait_s=...)``).
    Nothing was written; the rows are the caller's to keep and try again."""


class CacheWarning(UserWarning):
    """The prompt cache could not be used for a while (unreadable, read-only, disk
    full): requests still go out and results are still returned, uncached."""


class ConfigWarning(UserWarning):
    """A setting that is probably not what was meant, though nothing stops: an
    environment variable whose name is close to a minimallm setting but not one
    (``BATCH_NUM_WORKER``), or a configuration that lost its API key in a pickle."""
