"""Requests checked and encoded at the boundary (pure functions, no I/O).

A bad request must be that item's failure, named, never a stray ``ValueError:
dictionary update sequence…`` from deep inside, nor an exception that sinks a batch.
:func:`check_request` names what is wrong with a request (the field and what is
allowed); :func:`encode_request` builds the body and raises
:class:`~minimallm.InvalidRequestError` for anything that cannot be sent, with the
path to the culprit (``extra['x'] is an object of type object, not JSON``).

Decisions: NaN and infinities are refused (they are not JSON; ``json`` would write
``NaN`` and the server would answer 400 or guess). The keys of ``extra`` must be
strings (they become payload fields); a nested key JSON cannot write (a tuple) is
reported. An empty ``messages`` is refused (no server can answer it). Only types and
shapes are checked here, not ranges a server decides (a temperature of 5 goes out as
asked).

The common valid request costs one pass over its messages (a few isinstance checks
each) on top of the encoding; the slow search for a culprit runs only on failure.
"""

from __future__ import annotations

import dataclasses
import json
import math
import zlib
from collections.abc import Mapping, Sequence
from typing import Any

from minimallm._errors import InvalidRequestError
from minimallm._http.transport import build_payload
from minimallm._types import MinimaLlmRequest

__all__ = ["check_request", "encode_request", "reask_request", "request_label", "retry_temperature"]

_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def _default(value: object) -> Any:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


# JSONEncoder.encode builds its C encoder anew for every call (~1 µs of the ~2 µs it
# costs for a small request): build it once. No circular check (``markers`` None): a
# payload that contains itself recurses until RecursionError, which encode_request
# reports like any other value JSON cannot carry.
_C_ENCODER: Any = getattr(json.encoder, "c_make_encoder", None)  # not in typeshed
_encode_chunks: Any = None
if _C_ENCODER is not None:
    #  markers, default, encoder, indent, separators, sort_keys, skipkeys, allow_nan
    _encode_chunks = _C_ENCODER(
        None, _default, json.encoder.encode_basestring, None, ":", ",", False, False, False
    )


def _encode(payload: Mapping[str, Any]) -> str:
    if _encode_chunks is None:  # no C accelerator (PyPy)
        return _JSON.encode(payload)
    return "".join(_encode_chunks(payload, 0))


_SHAPE = "a list of objects with 'role' and 'content'"
_ONE = "an object with 'role' and 'content'"
_JSON_TYPES = "str, int, float, bool, None, and lists and objects of them"
_CONTENT = "a string, a list of content parts, or null"
_MAX_DEPTH = 200  # deeper than this is refused (the encoder recurses)


def request_label(index: int | None, request_id: object = None) -> str:
    """``request 17 (id 'q17')``, ``request 17``, ``request 'q17'`` or ``request``."""
    shown = _short(request_id) if request_id is not None else None
    if index is not None:
        return f"request {index}" + (f" (id {shown})" if shown else "")
    return f"request {shown}" if shown else "request"


def check_request(req: object, index: int | None = None) -> str | None:
    """What is wrong with ``req`` (prefixed with :func:`request_label`), or None.

    Checks the types and shapes of every field; values inside ``messages`` and
    ``extra`` that JSON cannot carry are found by :func:`encode_request`.
    """
    problem = _problem(req)
    if problem is None:
        return None
    return f"{request_label(index, getattr(req, 'request_id', None))}: {problem}"


_GZIP = 16 + zlib.MAX_WBITS
"""zlib's gzip container (what ``gzip.compress(mtime=0)`` writes), without the gzip module."""


def encode_request(
    model: str, req: MinimaLlmRequest, *, compress: bool, index: int | None = None
) -> bytes:
    """The request body (compact UTF-8 JSON, gzipped when ``compress``), or
    :class:`InvalidRequestError` naming the request, the field and what is allowed."""
    problem = _problem(req)
    if problem is None:
        payload = build_payload(model, req)
        try:
            body = _encode(payload).encode("utf-8")
        except (TypeError, ValueError, RecursionError):  # UnicodeEncodeError is a ValueError
            problem = _culprit(payload) or "cannot be encoded as JSON"
        else:
            return zlib.compress(body, 5, wbits=_GZIP) if compress else body
    request_id = getattr(req, "request_id", None)
    raise InvalidRequestError(
        f"{request_label(index, request_id)}: {problem}",
        problem=problem,
        index=index,
        request_id=request_id if isinstance(request_id, str) else None,
    )


# -- re-asks --------------------------------------------------------------------------


def retry_temperature(n: int, max_temperature: float, halflife: float) -> float:
    """The temperature of re-ask ``n`` (1, 2, ...): ``max·n/(n + halflife)``, rising
    with each re-ask and never reaching ``max`` (minima-llm 0.2.6's ramp)."""
    return max_temperature * n / (n + halflife)


def reask_request(
    req: MinimaLlmRequest, n: int, max_temperature: float, halflife: float
) -> MinimaLlmRequest:
    """What re-ask ``n`` (a forced refresh; 0: none) sends instead of ``req``: a
    ``seed`` (``n``, or the request's own seed + ``n``) and, when the request has no
    temperature (None or 0, in ``extra`` too), :func:`retry_temperature`, so a
    deterministic server can answer differently. Only what is sent changes: the cache
    key is the original request's, so a good answer replaces the bad entry.
    ``max_temperature`` 0 turns the ramp off (the seed still changes)."""
    if n <= 0:
        return req
    extra = dict(req.extra) if req.extra else {}
    seed = extra.get("seed")
    extra["seed"] = seed + n if type(seed) is int else n
    temperature = extra.get("temperature", req.temperature)
    if not temperature and max_temperature > 0:
        extra["temperature"] = retry_temperature(n, max_temperature, halflife)
    return dataclasses.replace(req, extra=extra)


# -- the checks -----------------------------------------------------------------------


def _problem(req: object) -> str | None:
    if not isinstance(req, MinimaLlmRequest):
        return f"must be a MinimaLlmRequest, got {_kind(req)}"
    if not isinstance(req.request_id, str):
        return f"request_id must be a string, got {_kind(req.request_id)}"
    # the messages, inline (the hot path: one pass, no call)
    messages = req.messages
    if type(messages) is not list and not isinstance(messages, (list, tuple)):
        return f"messages must be {_SHAPE}, got {_kind(messages)}"
    if not messages:
        return f"messages must be {_SHAPE}, got an empty {type(messages).__name__}"
    for i, message in enumerate(messages):
        # `type(...) is dict` first: the common case skips the ABC check
        if type(message) is not dict and not isinstance(message, Mapping):
            if message is None:
                return f"messages[{i}] is None; each message must be {_ONE}"
            return f"messages[{i}] must be {_ONE}, got {_kind(message)}"
        role = message.get("role")
        content = message.get("content")
        if type(role) is not str:
            if role is None and "role" not in message:
                return f"messages[{i}] has no 'role' (e.g. 'user', 'system', 'assistant')"
            return f"messages[{i}]['role'] must be a string, got {_kind(role)}"
        if content is not None and type(content) is not str and not isinstance(content, list):
            return f"messages[{i}]['content'] must be {_CONTENT}, got {_kind(content)}"
    temperature = req.temperature
    if temperature is not None:
        if not _is_number(temperature):
            return f"temperature must be a number or None, got {_kind(temperature)}"
        if not math.isfinite(temperature):
            return f"temperature must be a finite number, got {temperature!r}"
    max_tokens = req.max_tokens
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        return f"max_tokens must be an integer >= 1 or None, got {_kind(max_tokens)}"
    extra = req.extra
    if extra is not None:
        if not isinstance(extra, Mapping):
            return f"extra must be a dict (merged into the payload) or None, got {_kind(extra)}"
        for key in extra:
            if not isinstance(key, str):
                return f"extra has a key of type {type(key).__name__}; keys must be strings"
    model = req.model
    if model is not None and (type(model) is not str or not model.strip()):
        return f"model must be a non-empty string or None (configured model), got {_kind(model)}"
    sample = req.sample
    if sample != 0 and (type(sample) is not int or sample < 0):
        return f"sample must be an integer >= 0 (0: no sample number), got {_kind(sample)}"
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# -- finding what JSON refused (failure path only) -------------------------------------------


def _culprit(payload: Mapping[str, Any]) -> str | None:
    """The first value of ``payload`` that JSON cannot carry, described with its path
    as the user wrote it (``messages[0]['content']``, ``extra['x']``)."""
    extra_keys = set(payload) - {"model", "messages", "temperature", "max_tokens"}
    roots: list[tuple[str, object]] = [("messages", payload.get("messages"))]
    roots += [(f"extra[{key!r}]", payload[key]) for key in payload if key in extra_keys]
    for path, value in roots:
        found = _walk(path, value)
        if found is not None:
            return found
    return None


def _walk(path: str, value: object) -> str | None:
    stack: list[tuple[str, object, int, frozenset[int]]] = [(path, value, 0, frozenset())]
    while stack:
        where, item, depth, above = stack.pop()
        if depth > _MAX_DEPTH:
            return f"{path} is nested more than {_MAX_DEPTH} levels deep"
        if isinstance(item, str):
            bad = _surrogate(item)
            if bad is not None:
                return (
                    f"{where} contains a lone surrogate (U+{ord(item[bad]):04X}) at "
                    f"position {bad}, which is not valid Unicode and cannot be sent as "
                    "UTF-8 (text decoded with errors='surrogateescape'? re-decode it "
                    "with errors='replace')"
                )
        elif isinstance(item, float):
            if not math.isfinite(item):
                return f"{where} is {item!r}: not valid JSON (numbers must be finite)"
        elif item is None or isinstance(item, bool | int):
            continue
        elif isinstance(item, dict | list | tuple):
            if id(item) in above:
                return f"{where} contains itself (a circular reference)"
            inner = above | {id(item)}
            if isinstance(item, dict):
                for key in item:
                    if not isinstance(key, str):
                        kind = type(key).__name__
                        return f"{where} has a key of type {kind}; keys must be strings"
                children = [(f"{where}[{k!r}]", v) for k, v in item.items()]
            else:
                children = [(f"{where}[{i}]", v) for i, v in enumerate(item)]
            stack.extend((w, v, depth + 1, inner) for w, v in reversed(children))
        else:
            return f"{where} is {_kind(item)}, not JSON (allowed: {_JSON_TYPES})"
    return None


def _surrogate(text: str) -> int | None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def _kind(value: object) -> str:
    """How a wrong value is named: ``None``, ``a string ('hot')``, ``an int (0)``,
    ``a dict``, ``an object of type object``."""
    name = type(value).__name__
    article = "an" if name[:1].lower() in "aeiou" else "a"
    if value is None:
        return "None"
    if isinstance(value, str):
        return f"a string ({_short(value)})" if len(value) <= 40 else "a string"
    if isinstance(value, bool | int | float):
        return f"{article} {name} ({value!r})"
    if isinstance(value, Sequence | Mapping | set | frozenset):
        return f"{article} {name}"
    return f"{article} object of type {name}"


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
