"""Translations between DSPy 3.4's canonical LM types (``dspy.lm15``) and minimallm's.

DSPy hands an engine a canonical ``Request``; minimallm sends OpenAI chat JSON. The
Request is rendered with lm15's own OpenAI-chat builder (the exact inverse of how
DSPy read the adapter's messages, so ordinary messages reach the wire unchanged),
then split: ``messages``, ``temperature`` and ``max_tokens`` become request fields,
every other key goes to ``extra``. Answers come back through lm15's chat-response
reader; failures become lm15 errors, which DSPy turns into its ``LMError`` family.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Mapping
from typing import Any

from dspy import lm15  # type: ignore[import-untyped]

from minimallm._types import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse

__all__ = ["failure_error", "request_from_lm15", "response_to_lm15"]

_CALL_MODE_KEYS = ("model", "stream", "stream_options")


@functools.cache
def _builder() -> Any:
    # lm15's builder wants a credential and an address before it renders a body;
    # neither is used: only the JSON body is read, and minimallm sends it.
    return lm15.OpenAIChatLM(api_key="minimallm-unused", base_url="http://minimallm.invalid/v1")


def request_from_lm15(
    request: Any,
    request_id: str,
    extra_body: Mapping[str, Any] | None = None,
    *,
    token_limit: str = "max_tokens",
) -> MinimaLlmRequest:
    """The MinimaLlmRequest for a canonical DSPy ``Request``.

    The token limit is read from ``max_tokens`` or ``max_completion_tokens`` (lm15
    writes the latter for either) and sent under ``token_limit``, the name the user
    chose: ``max_tokens`` as the request field, ``max_completion_tokens`` in
    ``extra``, as given. ``extra_body`` is merged last, for server knobs the
    canonical Request cannot carry.
    """
    payload: dict[str, Any] = json.loads(_builder().build_request(request, stream=False).body)
    for key in _CALL_MODE_KEYS:
        payload.pop(key, None)
    messages = payload.pop("messages")
    temperature = payload.pop("temperature", None)
    max_tokens = payload.pop("max_tokens", None)
    max_completion = payload.pop("max_completion_tokens", None)
    if max_tokens is None:
        max_tokens = max_completion
    if token_limit == "max_completion_tokens" and max_tokens is not None:
        payload["max_completion_tokens"] = max_tokens
        max_tokens = None
    payload.update(extra_body or {})
    return MinimaLlmRequest(
        request_id=request_id,
        messages=messages,
        temperature=temperature,
        max_tokens=max_tokens,
        extra=payload or None,
    )


def response_to_lm15(result: MinimaLlmResponse, model: str) -> Any:
    """The canonical ``Response`` for a minimallm answer.

    The server's JSON is read by lm15 (usage, finish reason, reasoning, tool calls);
    without it (or if lm15 refuses it) the text and token counts are used. An answer
    from minimallm's cache reports zero usage, as DSPy does for its own cache hits:
    nothing was billed for it.
    """
    response = None
    raw = result.raw
    if isinstance(raw, Mapping) and raw.get("choices"):
        try:
            response = lm15.response_from_openai_chat(dict(raw), model=model)
        except (lm15.LM15Error, ValueError, TypeError):
            response = None
    if response is None:
        usage = lm15.Usage(
            input_tokens=result.prompt_tokens,
            output_tokens=result.completion_tokens,
            total_tokens=result.total_tokens,
        )
        response = lm15.Response(
            id=result.request_id,
            model=model,
            message=lm15.Message.assistant(result.text),
            finish_reason="stop",
            usage=usage,
        )
    if result.cached:
        zero = lm15.Usage(input_tokens=0, output_tokens=0, total_tokens=0)
        response = dataclasses.replace(response, usage=zero)
    return response


def _error_class(failure: MinimaLlmFailure) -> Any:
    status = failure.status
    if failure.error_type == "TimeoutError" or status == 408:
        return lm15.TimeoutError
    if status is None:
        return lm15.TransportError
    if status in (401, 403):
        return lm15.AuthError
    if status == 402:
        return lm15.BillingError
    if status == 429:
        return lm15.RateLimitError
    if status >= 500:
        return lm15.ServerError
    if status >= 400:
        return lm15.InvalidRequestError
    return lm15.ProviderError


def failure_error(failure: MinimaLlmFailure) -> Exception:
    """The lm15 error for a failed request (DSPy re-raises it as an ``LMError``).

    minimallm already retried the request, so the error class only says what went
    wrong; the failure itself rides along as ``minimallm_failure``.
    """
    message = (
        f"{failure.error_type}: {failure.message} "
        f"(request {failure.request_id}, {failure.attempts} attempt(s) "
        f"{failure.format_attempts()})"
    )
    error: Exception = _error_class(failure)(
        message, provider="minimallm", status=failure.status, request_id=failure.request_id
    )
    error.minimallm_failure = failure  # type: ignore[attr-defined]
    return error
