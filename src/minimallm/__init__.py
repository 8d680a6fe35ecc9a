"""minimallm: large batches of chat-completion calls, fast, polite and resumable."""

from minimallm._backend import OpenAIMinimaLlm
from minimallm._batch import run_batched_callable
from minimallm._config import BatchConfig, MinimaLlmConfig
from minimallm._context import (
    get_force_refresh,
    get_last_cached,
    reset_force_refresh,
    set_force_refresh,
    set_last_cached,
)
from minimallm._errors import (
    BackendClosedError,
    BatchAbortedError,
    ConfigError,
    ConfigWarning,
    InvalidRequestError,
    MinimaLlmError,
    UsageError,
)
from minimallm._signals import install_sigterm_handler
from minimallm._types import (
    AsyncMinimaLlmBackend,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    MinimaLlmResult,
)
from minimallm._version import __version__

__all__ = [
    "AsyncMinimaLlmBackend",
    "BackendClosedError",
    "BatchAbortedError",
    "BatchConfig",
    "ConfigError",
    "ConfigWarning",
    "InvalidRequestError",
    "MinimaLlmConfig",
    "MinimaLlmError",
    "MinimaLlmFailure",
    "MinimaLlmRequest",
    "MinimaLlmResponse",
    "MinimaLlmResult",
    "OpenAIMinimaLlm",
    "UsageError",
    "__version__",
    "get_force_refresh",
    "get_last_cached",
    "install_sigterm_handler",
    "reset_force_refresh",
    "run_batched_callable",
    "set_force_refresh",
    "set_last_cached",
]
