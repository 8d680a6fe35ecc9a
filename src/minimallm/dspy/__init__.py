"""DSPy integration: a DSPy LM served by minimallm, and batches of DSPy predictions.

Needs the optional extra (``pip install 'minimallm[dspy]'``, DSPy >= 3.0, < 3.5);
``import minimallm`` never imports DSPy, only ``import minimallm.dspy`` does.

* :class:`MinimaLlmDSPyLM` — ``dspy.context(lm=MinimaLlmDSPyLM(backend))``. On DSPy
  3.4 it is a ``dspy.LM`` with a minimallm engine (the supported contract there); on
  DSPy 3.0-3.3 a ``dspy.LM`` with its own ``forward``/``aforward``.
* :func:`run_dspy_batch` — a signature over many pydantic annotation objects.
* :func:`acall_program` — call a DSPy program from asyncio or trio alike.
* :func:`request_tag` — name the request ids of the LM calls made in a block.
* :func:`failure_of` — the ``MinimaLlmFailure`` behind an error DSPy raised.
"""

import inspect

try:
    import dspy  # type: ignore[import-untyped]
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "minimallm.dspy needs DSPy: install the extra with pip install 'minimallm[dspy]'"
    ) from exc

from minimallm.dspy._batch import (
    CONVERTER_ERRORS,
    DSPyBatchAbortedError,
    DSPyBatchError,
    acall_program,
    run_dspy_batch,
)
from minimallm.dspy._calls import CallTrace, failure_of, request_tag

ENGINE_API: bool = "engine" in inspect.signature(dspy.LM.__init__).parameters
"""True on DSPy 3.4+, where LMs are served through engines (``complete(Request)``)."""

if ENGINE_API:
    from minimallm.dspy._lm import REQUEST_ERRORS, MinimaLlmDSPyLM
else:  # pragma: no cover - exercised in the DSPy 3.0-3.3 CI environments
    from minimallm.dspy._legacy import REQUEST_ERRORS, MinimaLlmDSPyLM

__all__ = [
    "CONVERTER_ERRORS",
    "ENGINE_API",
    "REQUEST_ERRORS",
    "CallTrace",
    "DSPyBatchAbortedError",
    "DSPyBatchError",
    "MinimaLlmDSPyLM",
    "acall_program",
    "failure_of",
    "request_tag",
    "run_dspy_batch",
]
