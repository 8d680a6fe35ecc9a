"""run_dspy_batch: one DSPy signature over many annotation objects, on the batch runner.

Each item runs a DSPy predictor under ``dspy.context(lm=..., adapter=...)`` (never a
global DSPy setting). Under asyncio it awaits ``predictor.acall``; under trio, whose
runs DSPy's async path cannot join, it runs the predictor in a worker thread whose
LM calls re-enter the trio run (see ``_calls``). A parse failure or a converter
error retries the item with ``force_refresh`` set (a cached bad answer must not come
back); one DSPy parse failure costs two LM calls (ChatAdapter, then JSONAdapter).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import dspy  # type: ignore[import-untyped]
import trio
from dspy.utils.exceptions import AdapterParseError  # type: ignore[import-untyped]

from minimallm._batch import PROGRAMMING_ERRORS, Progress
from minimallm._config.settings import BatchConfig
from minimallm._context import reset_force_refresh, set_force_refresh, set_last_cached
from minimallm._errors import (
    BatchAbortedError,
    DSPyBatchAbortedError,
    DSPyBatchError,
    TokenBudgetExceededError,
)
from minimallm._progress.calls import CallCounter
from minimallm._types import MinimaLlmFailure
from minimallm.dspy._calls import CallTrace, loop_library, request_tag

__all__ = [
    "CONVERTER_ERRORS",
    "DSPyBatchAbortedError",
    "DSPyBatchError",
    "acall_program",
    "run_dspy_batch",
]

A = TypeVar("A")

CONVERTER_ERRORS: tuple[type[Exception], ...] = (
    ValueError,
    LookupError,
    ArithmeticError,
    AssertionError,
)
"""Errors of an output converter that mean "this answer is unusable" (a grade that is
not a number, a missing key …): the item is retried with a fresh answer. Programming
errors (TypeError, NameError, AttributeError …) are raised at once instead."""

_LISTED_FAILURES = 20


async def _call_program(
    program: Any, inputs: Mapping[str, Any], limiter: trio.CapacityLimiter | None
) -> Any:
    if loop_library() == "trio":
        run = functools.partial(program, **inputs)
        return await trio.to_thread.run_sync(run, limiter=limiter)
    return await program.acall(**inputs)


async def acall_program(program: Any, /, **inputs: Any) -> Any:
    """Call a DSPy program (a module or predictor) from asyncio or from trio.

    Under asyncio this is ``await program.acall(**inputs)``. Under trio, DSPy's
    asyncio-only async path cannot run, so the program runs in a worker thread
    (``trio.to_thread.run_sync``, trio's default thread limiter) and its LM calls
    come back into this trio run; cancelling the caller cancels them.
    """
    return await _call_program(program, inputs, None)


def _input_names(signature_class: Any) -> list[str]:
    if not (isinstance(signature_class, type) and issubclass(signature_class, dspy.Signature)):
        raise TypeError(f"run_dspy_batch needs a dspy.Signature class, got {signature_class!r}")
    signature: Any = signature_class  # DSPy is untyped: input_fields is a class property
    return list(signature.input_fields)


def _check_objects(objs: Sequence[Any], names: list[str]) -> None:
    checked: set[type] = set()
    for obj in objs:
        cls = type(obj)
        if cls in checked:
            continue
        fields = getattr(cls, "model_fields", None)
        if not callable(getattr(obj, "model_dump", None)) or fields is None:
            raise TypeError(f"annotation objects must be pydantic models, got {cls.__name__}")
        missing = [n for n in names if n not in fields]
        if missing:
            raise TypeError(f"{cls.__name__} has no field for the signature's inputs {missing}")
        checked.add(cls)


def _short(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def _cached(trace: CallTrace) -> bool:
    return trace.calls > 0 and trace.cached == trace.calls


def _failure_message(name: str, total: int, failures: list[tuple[int, MinimaLlmFailure]]) -> str:
    lines = [f"run_dspy_batch({name}): {len(failures)} of {total} items failed:"]
    for index, failure in failures[:_LISTED_FAILURES]:
        lines.append(f"  - item {index} [{failure.request_id}] {failure.error_type}: ")
        lines[-1] += failure.message
    if len(failures) > _LISTED_FAILURES:
        lines.append(f"  … and {len(failures) - _LISTED_FAILURES} more")
    return "\n".join(lines)


def _aborted(exc: BatchAbortedError, name: str, total: int) -> DSPyBatchAbortedError:
    """The batch runner's abort, as run_dspy_batch's own error (the partial results,
    the failed items by index)."""
    results = list(exc.results)
    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, MinimaLlmFailure)]
    finished = sum(r is not None for r in results)
    message = (
        f"{exc}\nrun_dspy_batch({name}) stopped: {len(failures)} of the {finished} items "
        f"finished (of {total}) failed; the rest never ran"
    )
    return DSPyBatchAbortedError(message, results, failures)


async def run_dspy_batch(
    signature_class: Any,
    annotation_objs: Sequence[A],
    output_converter: Callable[[Any, A], object],
    backend: Any = None,
    *,
    predictor_class: Callable[[Any], Any] | None = None,
    max_parse_attempts: int = 3,
    adapter: Any = None,
    lm_kwargs: Mapping[str, Any] | None = None,
    batch_config: BatchConfig | None = None,
    progress: Progress = None,
) -> list[A]:
    """Run ``predictor_class(signature_class)`` over every annotation object and let
    ``output_converter(prediction, obj)`` fill each object in; return the objects in
    input order.

    The signature's InputFields are read from each object by name
    (``obj.model_dump(include=...)``). Items run on the batch runner (``num_workers``
    at once, heartbeat, failure budget; ``batch_config`` defaults to the backend's).
    An unparseable answer (``AdapterParseError``) or a converter error from
    ``CONVERTER_ERRORS`` retries the item, up to ``max_parse_attempts`` attempts in
    all, with ``force_refresh`` set for the retries; programming errors are raised at
    once. A request that fails after minimallm's own retries fails its item. If any
    item failed, :class:`DSPyBatchError` (a RuntimeError) lists them. A batch that
    stops early (more failures than ``max_failures``) raises
    :class:`DSPyBatchAbortedError`, both a DSPyBatchError and a BatchAbortedError, with
    the partial results. The progress counts the LM calls as they are made.

    ``backend=None`` builds ``OpenAIMinimaLlm.from_env()`` and closes it afterwards.
    ``predictor_class`` defaults to ``dspy.ChainOfThought``, ``adapter`` to
    ``dspy.ChatAdapter()``; ``lm_kwargs`` go to :class:`MinimaLlmDSPyLM`.
    """
    from minimallm import run_batched_callable
    from minimallm.dspy import REQUEST_ERRORS, MinimaLlmDSPyLM

    if max_parse_attempts < 1:
        raise ValueError(f"max_parse_attempts={max_parse_attempts!r} must be >= 1")
    names = _input_names(signature_class)
    objs = list(annotation_objs)
    _check_objects(objs, names)
    owned = backend is None
    if owned:
        from minimallm._backend import OpenAIMinimaLlm

        backend = OpenAIMinimaLlm.from_env()
    try:
        cfg = batch_config or getattr(getattr(backend, "cfg", None), "batch", None)
        cfg = cfg or BatchConfig.from_env()
        lm = MinimaLlmDSPyLM(backend, **(lm_kwargs or {}))
        chosen_adapter = adapter if adapter is not None else dspy.ChatAdapter()
        predictor = (predictor_class or dspy.ChainOfThought)(signature_class)
        limiter = trio.CapacityLimiter(cfg.num_workers) if loop_library() == "trio" else None
        include = set(names)
        sig_name = signature_class.__name__
        calls = CallCounter()  # the progress shows the LM calls as they go

        async def one(entry: tuple[int, A]) -> A | MinimaLlmFailure:
            index, obj = entry
            inputs = obj.model_dump(include=include)  # type: ignore[attr-defined]
            problem = "no attempt made"
            for attempt in range(1, max_parse_attempts + 1):
                # re-ask n sends a seed and a rising temperature (see set_force_refresh)
                refresh = set_force_refresh(attempt - 1) if attempt > 1 else None
                try:
                    with (
                        request_tag(f"{sig_name}:{index}:a{attempt}", calls) as trace,
                        dspy.context(lm=lm, adapter=chosen_adapter),
                    ):
                        try:
                            prediction = await _call_program(predictor, inputs, limiter)
                        except AdapterParseError as exc:
                            problem = _short(exc)
                            continue
                        except REQUEST_ERRORS:
                            if trace.failure is None:
                                raise
                            return trace.failure
                    try:
                        output_converter(prediction, obj)
                    except PROGRAMMING_ERRORS:
                        raise
                    except CONVERTER_ERRORS as exc:
                        problem = f"output_converter raised {_short(exc)}"
                        continue
                finally:
                    if refresh is not None:
                        reset_force_refresh(refresh)
                set_last_cached(_cached(trace))
                return obj
            return MinimaLlmFailure(
                request_id=f"{sig_name}:{index}",
                error_type="ParseError",
                message=f"no usable answer in {max_parse_attempts} attempt(s); last: {problem}",
                attempts=max_parse_attempts,
            )

        try:
            results: list[Any] = await run_batched_callable(
                list(enumerate(objs)), one, cfg, progress=progress, calls=calls
            )
        except TokenBudgetExceededError:
            raise  # not the items' failures: MAX_TOTAL_TOKENS, with the partial results
        except BatchAbortedError as exc:
            raise _aborted(exc, sig_name, len(objs)) from None
    finally:
        if owned:
            await backend.aclose()
    failures = [(i, r) for i, r in enumerate(results) if isinstance(r, MinimaLlmFailure)]
    if failures:
        raise DSPyBatchError(_failure_message(sig_name, len(objs), failures), results, failures)
    return results
