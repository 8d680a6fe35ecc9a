"""Prompt-cache keys: the canonical JSON of a request and its SHA-256.

The formula is the original implementation's, byte for byte, so the entries its
caches hold keep hitting. Pure and cheap: no I/O, safe on the trio thread. The store
that files answers under these keys is :mod:`minimallm._cache.store`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from minimallm._types import MinimaLlmRequest

__all__ = ["cache_key", "canonical_request_json", "key_of_canonical", "model_family"]

# Exactly json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":")).
# json.dumps, and even a reused JSONEncoder, build a new C encoder on every call: ~40%
# of a key's cost (4.8 -> 2.8 us measured), which matters for a fully cached rerun.
# So build the C encoder once; without circular-reference markers, because keys are
# computed on several threads at once (a cyclic message fails with RecursionError).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=True, separators=(",", ":"))
_c_make_encoder = getattr(json.encoder, "c_make_encoder", None)
_C_ENCODE = (
    None
    if _c_make_encoder is None
    else _c_make_encoder(
        None,  # markers: no circular check (thread-safe)
        _CANONICAL.default,
        json.encoder.encode_basestring_ascii,
        None,  # indent
        ":",
        ",",
        True,  # sort_keys
        False,  # skipkeys
        True,  # allow_nan
    )
)


def _encode(obj: dict[str, Any]) -> str:
    if _C_ENCODE is None:
        return _CANONICAL.encode(obj)
    return "".join(_C_ENCODE(obj, 0))


def canonical_request_json(model: str, req: MinimaLlmRequest) -> str:
    """The canonical JSON text that :func:`cache_key` hashes (useful to debug a miss).

    ``model`` (the request's own when it names one) and ``messages`` always;
    ``temperature`` and ``max_tokens`` when not None; ``extra`` when non-empty;
    ``sample`` when non-zero; keys sorted, ASCII only, no spaces, exactly as the
    original implementation did, so its caches keep hitting (a request without
    ``model`` and ``sample`` has the key it always had).
    """
    # json only encodes real dicts; copying the ones that already are costs time.
    messages = [m if type(m) is dict else dict(m) for m in req.messages]
    obj: dict[str, Any] = {"model": req.model or model, "messages": messages}
    if req.temperature is not None:
        obj["temperature"] = req.temperature
    if req.max_tokens is not None:
        obj["max_tokens"] = req.max_tokens
    if req.extra:
        obj["extra"] = dict(req.extra)
    if req.sample:
        obj["sample"] = req.sample
    return _encode(obj)


def cache_key(model: str, req: MinimaLlmRequest) -> str:
    """The cache key of ``req`` sent to ``model``: SHA-256 hex of the canonical JSON.

    ``request_id`` is not part of it: identical prompts share one entry.
    """
    return key_of_canonical(canonical_request_json(model, req))


def key_of_canonical(canonical: str) -> str:
    """The cache key of a canonical JSON text (SHA-256 hex)."""
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def model_family(model: str, configured: str, synonyms: tuple[str, ...]) -> list[str]:
    """The model names whose entries answer a request for ``model``, ``model`` first.

    As minima-llm 0.2.7: the synonyms (``MODEL_SYNONYMS``) count only for a request
    whose model is the configured one or one of its synonyms; then every name of that
    family follows, in the order configured model, synonyms. A request for any other
    model has its own name alone. A name's entries are found under the key of the
    same request with that name in place of the model (:func:`cache_key`).
    """
    family = (configured, *synonyms)
    if model not in family:
        return [model]
    return [model, *dict.fromkeys(n for n in family if n != model)]
