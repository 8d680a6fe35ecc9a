"""MinimaLlmDSPyLM for DSPy 3.0-3.3: a ``dspy.LM`` with its own ``forward``/``aforward``.

Before 3.4, a custom LM implements ``forward(prompt, messages, **kwargs)`` returning
an OpenAI-shaped completion, and DSPy's LM layer keeps history, usage and callbacks
(it is a ``dspy.LM`` subclass because DSPy 3.0 sends LM callbacks to ``dspy.LM``s
only; LiteLLM is never called). Messages are sent exactly as DSPy built them;
``lm.kwargs`` merged with the call's kwargs become ``temperature``, ``max_tokens``
and ``extra``. DSPy 3.4+
uses the engine-based class in ``_lm`` instead (this contract is deprecated there).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import dspy  # type: ignore[import-untyped]

from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse
from minimallm.dspy._calls import (
    agenerate,
    generate_blocking,
    next_request_id,
    record,
)

try:  # DSPy 3.3 has an LMError family; its ChatAdapter does not fall back on it
    from dspy.utils.exceptions import LMError as _RequestErrorBase  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover - older DSPy
    _RequestErrorBase = RuntimeError

__all__ = ["REQUEST_ERRORS", "MinimaLlmDSPyLM", "MinimaLlmRequestError"]

# Call settings that steer DSPy itself and never go on the wire.
_DSPY_ONLY = ("rollout_id", "num_retries", "cache", "headers")
_OWN_SETTINGS = ("cache", "num_retries")


class MinimaLlmRequestError(_RequestErrorBase):  # type: ignore[misc]
    """A request failed after minimallm's retries; ``failure`` says how."""

    def __init__(self, failure: MinimaLlmFailure) -> None:
        super().__init__(
            f"{failure.error_type}: {failure.message} (request {failure.request_id}, "
            f"{failure.attempts} attempt(s) {failure.format_attempts()})"
        )
        self.failure = failure
        self.minimallm_failure = failure


REQUEST_ERRORS: tuple[type[BaseException], ...] = (MinimaLlmRequestError,)
"""What a DSPy program raises when a request failed (after minimallm's retries)."""


@dataclass(slots=True)
class _Message:
    content: str
    role: str = "assistant"
    reasoning_content: str | None = None
    tool_calls: Any = None
    provider_specific_fields: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Choice:
    message: _Message
    index: int = 0
    finish_reason: str = "stop"
    logprobs: Any = None


@dataclass(slots=True)
class _Completion:
    """The OpenAI-shaped object DSPy's LM layer reads (attribute access)."""

    id: str
    model: str
    choices: list[_Choice]
    usage: dict[str, int]
    cache_hit: bool
    _hidden_params: dict[str, Any] = field(default_factory=dict)


def _completion(result: MinimaLlmResponse, model: str) -> _Completion:
    raw = result.raw if isinstance(result.raw, Mapping) else {}
    first = (raw.get("choices") or [{}])[0]
    message = (first.get("message") or {}) if isinstance(first, Mapping) else {}
    if result.cached:  # nothing billed, as for DSPy's own cache hits
        usage = {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0}
    else:
        usage = {
            "prompt_tokens": result.prompt_tokens or 0,
            "completion_tokens": result.completion_tokens or 0,
            "total_tokens": result.total_tokens or 0,
        }
    choice = _Choice(
        _Message(
            result.text,
            reasoning_content=message.get("reasoning_content"),
            tool_calls=message.get("tool_calls"),
        ),
        finish_reason=str(first.get("finish_reason") or "stop"),
    )
    return _Completion(
        id=str(raw.get("id") or result.request_id),
        model=str(raw.get("model") or model),
        choices=[choice],
        usage=usage,
        cache_hit=result.cached,
    )


class MinimaLlmDSPyLM(dspy.LM):  # type: ignore[misc]
    """A DSPy language model served by a minimallm backend (DSPy 3.0-3.3).

    Same constructor and behaviour as the DSPy 3.4 class: keyword arguments become
    ``lm.kwargs`` (``temperature``/``max_tokens`` as request fields, the rest as
    top-level JSON keys), ``extra_body`` is merged into every body, DSPy's cache and
    retries are off, ``set_force_refresh`` is honoured and ``get_last_cached()`` is
    set. Messages are sent exactly as DSPy built them. A failed request raises
    :class:`MinimaLlmRequestError`; a synchronous call inside a running event loop is
    served by minimallm's background thread while the loop waits.
    """

    def __init__(
        self,
        backend: Any,
        *,
        model: str | None = None,
        extra_body: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        own = sorted(k for k in _OWN_SETTINGS if k in kwargs)
        if own:
            raise TypeError(
                f"MinimaLlmDSPyLM cannot set {own}: minimallm caches and retries every "
                "request, so DSPy's cache and retries stay off"
            )
        model_name = getattr(getattr(backend, "cfg", None), "model", None) or "minimallm"
        super().__init__(model or model_name, cache=False, num_retries=0, **kwargs)
        self.backend = backend
        self.extra_body: dict[str, Any] = dict(extra_body or {})

    def __deepcopy__(self, memo: dict[int, Any]) -> MinimaLlmDSPyLM:
        # DSPy deep-copies LMs (copy(), optimizers); the backend holds live
        # connections and is shared, DSPy's own state is not.
        new: MinimaLlmDSPyLM = copy.copy(self)
        new.kwargs = copy.deepcopy(self.kwargs, memo)
        new.history = []
        new.callbacks = list(self.callbacks)
        new.extra_body = dict(self.extra_body)
        return new

    def __repr__(self) -> str:
        return f"MinimaLlmDSPyLM(model={self.model!r}, kwargs={self.kwargs!r})"

    def _request(self, prompt: Any, messages: Any, kwargs: Mapping[str, Any]) -> MinimaLlmRequest:
        merged = {**self.kwargs, **kwargs}
        for key in _DSPY_ONLY:
            merged.pop(key, None)
        temperature = merged.pop("temperature", None)
        max_tokens = merged.pop("max_tokens", None)
        max_completion = merged.pop("max_completion_tokens", None)
        if max_completion is not None:  # sent as given, never rewritten into max_tokens
            merged["max_completion_tokens"] = max_completion
        extra = {**merged, **self.extra_body}
        return MinimaLlmRequest(
            request_id=next_request_id(),
            messages=messages or [{"role": "user", "content": prompt}],
            temperature=temperature,
            max_tokens=max_tokens,
            extra=extra or None,
        )

    def _finish(self, result: Any) -> _Completion:
        outcome = record(result)
        if isinstance(outcome, MinimaLlmFailure):
            raise MinimaLlmRequestError(outcome)
        return _completion(outcome, self.model)

    def forward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> _Completion:
        """One blocking call (inside a running event loop too: see ``_calls``)."""
        return self._finish(
            generate_blocking(self.backend, self._request(prompt, messages, kwargs))
        )

    async def aforward(self, prompt: Any = None, messages: Any = None, **kwargs: Any) -> Any:
        """One call from asyncio."""
        req = self._request(prompt, messages, kwargs)
        return self._finish(await agenerate(self.backend, req))

    def copy(self, **kwargs: Any) -> MinimaLlmDSPyLM:
        """``dspy.LM.copy``, keeping DSPy's cache and retries off."""
        own = sorted(k for k in _OWN_SETTINGS if k in kwargs)
        if own:
            raise TypeError(f"MinimaLlmDSPyLM.copy cannot change {own}")
        copied: MinimaLlmDSPyLM = super().copy(**kwargs)
        return copied
