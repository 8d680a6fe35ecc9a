"""MinimaLlmDSPyLM for DSPy 3.4+: a ``dspy.LM`` whose engine is a minimallm backend.

DSPy 3.4 routes every LM call through an engine (``complete(Request) -> Response``)
and keeps history, usage, callbacks and ``lm.kwargs`` in its LM layer; custom
``forward``/``aforward`` LMs are deprecated there (removal announced for 3.5). This
class is a ``dspy.LM`` with minimallm's engines plugged in and DSPy's cache and
retries off (minimallm does both, once). ``predictor(...)`` takes the sync engine,
``await predictor.acall(...)`` (asyncio) the async one; see ``_calls`` for where a
synchronous call goes (trio worker thread, running event loop, plain thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any

import dspy  # type: ignore[import-untyped]
from dspy import lm15
from dspy.utils.exceptions import LMError  # type: ignore[import-untyped]

from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResult
from minimallm.dspy._calls import (
    agenerate,
    generate_blocking,
    next_request_id,
    record,
)
from minimallm.dspy._wire import failure_error, request_from_lm15, response_to_lm15

__all__ = ["REQUEST_ERRORS", "MinimaLlmDSPyLM"]

REQUEST_ERRORS: tuple[type[BaseException], ...] = (LMError,)
"""What a DSPy program raises when a request failed (after minimallm's retries)."""

_OWN_SETTINGS = ("cache", "num_retries", "engine", "async_engine")
# The LM making the current call: engines are shared by copies of an LM, so a
# copy's own settings (extra_body) reach the engine through the call, not the engine.
# The call's own kwargs ride along: lm15's canonical Request keeps one max_tokens, so
# the spelling the user chose (max_tokens or max_completion_tokens) is read here.
_calling_lm: ContextVar[tuple[MinimaLlmDSPyLM, Mapping[str, Any]] | None] = ContextVar(
    "minimallm_dspy_lm", default=None
)
_TOKEN_LIMITS = ("max_tokens", "max_completion_tokens")


def token_limit_name(lm_kwargs: Mapping[str, Any], call_kwargs: Mapping[str, Any]) -> str:
    """The key the token limit goes out as: the one the call names, else the one the
    LM's kwargs name (``dspy.LM`` itself writes ``max_completion_tokens`` for OpenAI's
    reasoning models), else ``max_tokens``. Never rewritten into the other: OpenAI's
    reasoning models refuse ``max_tokens``, older servers know only ``max_tokens``."""
    for kwargs in (call_kwargs, lm_kwargs):
        named = [k for k in _TOKEN_LIMITS if kwargs.get(k) is not None]
        if len(named) == 1:
            return named[0]
    return "max_tokens"


def _minimallm_request(request: Any) -> MinimaLlmRequest:
    calling = _calling_lm.get()
    if calling is None:
        return request_from_lm15(request, next_request_id())
    lm, call_kwargs = calling
    limit = token_limit_name(lm.kwargs, call_kwargs)
    return request_from_lm15(request, next_request_id(), lm.extra_body, token_limit=limit)


def _response(result: MinimaLlmResult, model: str) -> Any:
    outcome = record(result)
    if isinstance(outcome, MinimaLlmFailure):
        raise failure_error(outcome)
    return response_to_lm15(outcome, model)


def _no_streaming() -> Exception:
    error: Exception = lm15.UnsupportedFeatureError(
        "minimallm returns whole completions; DSPy streaming is not supported",
        provider="minimallm",
    )
    return error


class _SyncEngine:
    """DSPy's synchronous engine: ``complete(Request) -> Response``."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"<minimallm sync engine for {self.backend!r}>"

    def __deepcopy__(self, memo: dict[int, Any]) -> _SyncEngine:
        return self  # borrowed: it holds live connections, so copies share it

    def complete(self, request: Any) -> Any:
        """Answer one canonical request (blocking)."""
        result = generate_blocking(self.backend, _minimallm_request(request))
        return _response(result, request.model)

    def stream(self, request: Any) -> Any:
        """Refused: minimallm answers whole completions."""
        raise _no_streaming()

    def close(self) -> None:
        """Nothing to do: the backend belongs to whoever made it."""


class _AsyncEngine:
    """DSPy's async engine (asyncio): ``async complete(Request) -> Response``."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def __repr__(self) -> str:
        return f"<minimallm async engine for {self.backend!r}>"

    def __deepcopy__(self, memo: dict[int, Any]) -> _AsyncEngine:
        return self

    async def complete(self, request: Any) -> Any:
        """Answer one canonical request."""
        result = await agenerate(self.backend, _minimallm_request(request))
        return _response(result, request.model)

    def stream(self, request: Any) -> Any:
        """Refused: minimallm answers whole completions."""
        raise _no_streaming()

    async def aclose(self) -> None:
        """Nothing to do: the backend belongs to whoever made it."""


def model_of(backend: Any) -> str:
    """The backend's model name (``backend.cfg.model``), else ``"minimallm"``."""
    model = getattr(getattr(backend, "cfg", None), "model", None)
    return model if isinstance(model, str) and model else "minimallm"


def refuse_own_settings(kwargs: Mapping[str, Any], where: str) -> None:
    """TypeError for the settings minimallm owns (DSPy's cache, retries, engines)."""
    own = sorted(k for k in _OWN_SETTINGS if k in kwargs)
    if own:
        raise TypeError(
            f"{where} cannot set {own}: minimallm caches and retries every request, "
            "so DSPy's cache and retries stay off"
        )


class MinimaLlmDSPyLM(dspy.LM):  # type: ignore[misc]
    """A DSPy language model served by a minimallm backend.

    ``MinimaLlmDSPyLM(backend, temperature=0.0, max_tokens=512, ...)``: keyword
    arguments become ``lm.kwargs`` as for ``dspy.LM``; ``temperature`` and
    ``max_tokens`` are sent as request fields, other generation settings
    (``top_p``, ``stop``, ``seed``, ``n``, ``logprobs``, ``reasoning_effort`` …) as
    top-level JSON keys; ``max_completion_tokens`` goes out under that name (never
    rewritten into ``max_tokens``, which OpenAI's reasoning models refuse). ``extra_body`` is
    merged into every request body as is, for server knobs DSPy's request cannot
    carry (vLLM's ``repetition_penalty`` …). ``model`` defaults to the backend's
    model; it names the model in DSPy's history (the backend decides what is sent).

    DSPy's cache and retries are off: minimallm caches and retries every request.
    ``set_force_refresh`` is honoured; ``get_last_cached()`` tells whether the last
    answer came from minimallm's cache (such answers report zero usage to DSPy, as
    its own cache hits do). A failed request raises DSPy's ``LMError`` for its kind;
    its ``__cause__.minimallm_failure`` is the :class:`~minimallm.MinimaLlmFailure`.
    A synchronous call inside a running event loop (a notebook cell) is served by
    minimallm's background thread while the loop waits, as with DSPy's own LM.
    """

    def __init__(
        self,
        backend: Any,
        *,
        model: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        refuse_own_settings(kwargs, "MinimaLlmDSPyLM")
        self.backend = backend
        self.extra_body: dict[str, Any] = dict(extra_body or {})
        super().__init__(
            model or model_of(backend),
            engine=_SyncEngine(backend),
            async_engine=_AsyncEngine(backend),
            cache=False,
            num_retries=0,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f"MinimaLlmDSPyLM(model={self.model!r}, kwargs={self.kwargs!r})"

    def __deepcopy__(self, memo: dict[int, Any]) -> MinimaLlmDSPyLM:
        # DSPy deep-copies programs (optimizers, Module.deepcopy); the backend holds
        # live connections and is shared, DSPy's own state is isolated by copy().
        return self.copy()

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        """DSPy's synchronous call (also inside a running event loop, see ``_calls``)."""
        token = _calling_lm.set((self, kwargs))
        try:
            return super().__call__(prompt, messages=messages, **kwargs)
        finally:
            _calling_lm.reset(token)

    async def acall(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        """DSPy's asynchronous call (asyncio)."""
        token = _calling_lm.set((self, kwargs))
        try:
            return await super().acall(prompt, messages=messages, **kwargs)
        finally:
            _calling_lm.reset(token)

    def copy(self, **kwargs: Any) -> MinimaLlmDSPyLM:
        """``dspy.LM.copy``, keeping DSPy's cache and retries off."""
        refuse_own_settings(kwargs, "MinimaLlmDSPyLM.copy")
        copied: MinimaLlmDSPyLM = super().copy(**kwargs)
        return copied
