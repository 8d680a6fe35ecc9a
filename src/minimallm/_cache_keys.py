"""Prompt-cache keys: the canonical JSON of a request and its SHA-256.

The formula is the original implementation's, byte for byte, so the entries its
caches hold keep hitting. Pure and cheap: no I/O, safe on the trio thread. The store
that files answers under these keys is :mod:`minimallm._cache`.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from minimallm._types import MinimaLlmRequest

__all__ = ["cache_key", "canonical_request_json"]

# Exactly json.dumps(obj, sort_keys=True, ensure_ascii=True, separators=(",", ":")),
# built once: json.dumps builds a new encoder per call (measured ~45% of the key's cost).
_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=True, separators=(",", ":"))


def canonical_request_json(model: str, req: MinimaLlmRequest) -> str:
    """The canonical JSON text that :func:`cache_key` hashes (useful to debug a miss).

    ``model`` and ``messages`` always; ``temperature`` and ``max_tokens`` when not
    None; ``extra`` when non-empty; keys sorted, ASCII only, no spaces, exactly as the
    original implementation did, so its caches keep hitting.
    """
    # json only encodes real dicts; copying the ones that already are costs time.
    messages = [m if type(m) is dict else dict(m) for m in req.messages]
    obj: dict[str, Any] = {"model": model, "messages": messages}
    if req.temperature is not None:
        obj["temperature"] = req.temperature
    if req.max_tokens is not None:
        obj["max_tokens"] = req.max_tokens
    if req.extra:
        obj["extra"] = dict(req.extra)
    return _CANONICAL.encode(obj)


def cache_key(model: str, req: MinimaLlmRequest) -> str:
    """The cache key of ``req`` sent to ``model``: SHA-256 hex of the canonical JSON.

    ``request_id`` is not part of it: identical prompts share one entry.
    """
    return hashlib.sha256(canonical_request_json(model, req).encode("ascii")).hexdigest()
