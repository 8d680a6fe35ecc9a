"""The exception tree. Single-request failures are values (MinimaLlmFailure), not these.

MinimaLlmError
├── ConfigError (also ValueError)      bad configuration, raised at construction
├── BackendClosedError                 use of a runtime after it was shut down
├── UsageError (also RuntimeError)     an entry point called where it cannot work
└── BatchAbortedError (also RuntimeError)  a batch exceeded max_failures
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "BackendClosedError",
    "BatchAbortedError",
    "CacheWarning",
    "ConfigError",
    "MinimaLlmError",
    "UsageError",
]


class MinimaLlmError(Exception):
    """Root of every exception minimallm raises on purpose."""


class ConfigError(MinimaLlmError, ValueError):
    """The configuration is invalid; the message names every bad setting at once."""


class BackendClosedError(MinimaLlmError):
    """The runtime serving this call was shut down while the call was waiting."""


class UsageError(MinimaLlmError, RuntimeError):
    """An entry point was called from a context where it cannot work (e.g. a
    synchronous call on the thread of a running event loop)."""


class BatchAbortedError(MinimaLlmError, RuntimeError):
    """A batch saw more than ``max_failures`` failures and stopped.

    ``results`` holds the partial results, index-aligned with the input (None where
    an item never finished); ``failures`` the failures seen.
    """

    def __init__(self, message: str, results: Sequence[Any], failures: Sequence[Any]) -> None:
        super().__init__(message)
        self.results = list(results)
        self.failures = list(failures)


class CacheWarning(UserWarning):
    """The prompt cache could not be used for a while (unreadable, read-only, disk
    full): requests still go out and results are still returned, uncached."""
