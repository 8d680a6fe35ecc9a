"""minimallm: large batches of chat-completion calls, fast, polite and resumable.

The DSPy names ``MinimaLlmDSPyLM`` and ``run_dspy_batch`` are also reachable here (the
reference document's import line), resolved on first access: ``import minimallm`` never
imports DSPy, and without the ``minimallm[dspy]`` extra the access raises an ImportError
saying how to install it.
"""

from typing import TYPE_CHECKING, Any

from minimallm._backend import OpenAIMinimaLlm
from minimallm._batch import run_batched_callable, stream_batched_callable
from minimallm._config.settings import BatchConfig, MinimaLlmConfig
from minimallm._context import (
    get_force_refresh,
    get_last_cached,
    reset_force_refresh,
    set_force_refresh,
    set_last_cached,
)
from minimallm._errors import (
    BackendClosedError,
    BackendFailedError,
    BatchAbortedError,
    ConfigError,
    ConfigWarning,
    InvalidRequestError,
    MinimaLlmError,
    TokenBudgetExceededError,
    UsageError,
)
from minimallm._progress import BatchProgress
from minimallm._signals import install_sigterm_handler
from minimallm._types import (
    AsyncMinimaLlmBackend,
    MinimaLlmChoice,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    MinimaLlmResult,
)
from minimallm._version import __version__

if TYPE_CHECKING:  # static tools see the real types; at run time they resolve lazily
    from minimallm.dspy import MinimaLlmDSPyLM as MinimaLlmDSPyLM
    from minimallm.dspy import run_dspy_batch as run_dspy_batch

__all__ = [
    "AsyncMinimaLlmBackend",
    "BackendClosedError",
    "BackendFailedError",
    "BatchAbortedError",
    "BatchConfig",
    "BatchProgress",
    "ConfigError",
    "ConfigWarning",
    "InvalidRequestError",
    "MinimaLlmChoice",
    "MinimaLlmConfig",
    "MinimaLlmError",
    "MinimaLlmFailure",
    "MinimaLlmRequest",
    "MinimaLlmResponse",
    "MinimaLlmResult",
    "OpenAIMinimaLlm",
    "TokenBudgetExceededError",
    "UsageError",
    "__version__",
    "get_force_refresh",
    "get_last_cached",
    "install_sigterm_handler",
    "reset_force_refresh",
    "run_batched_callable",
    "set_force_refresh",
    "set_last_cached",
    "stream_batched_callable",
]

_LAZY_DSPY = ("MinimaLlmDSPyLM", "run_dspy_batch")
"""Names served from :mod:`minimallm.dspy` on first access. Not in ``__all__``: a
star-import must work without DSPy installed."""


def __getattr__(name: str) -> Any:
    if name in _LAZY_DSPY:
        import minimallm.dspy  # raises ImportError naming the [dspy] extra without DSPy

        value = getattr(minimallm.dspy, name)
        globals()[name] = value  # later accesses skip this function
        return value
    raise AttributeError(f"module 'minimallm' has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public names (what ``help(minimallm)`` and ``inspect.getmembers`` walk): the
    lazy DSPy names only where DSPy is installed, so walking them never raises; no
    helpers of this module (``Any``) and no subpackages."""
    import importlib.util

    lazy = _LAZY_DSPY if importlib.util.find_spec("dspy") is not None else ()
    dunders = {n for n in globals() if n.startswith("__") and n.endswith("__")}
    return sorted({*__all__, *lazy, *dunders})
