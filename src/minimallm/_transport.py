"""HTTP for one attempt: payload encoding, the single-connection client, and the one
place where transport exceptions and HTTP answers become attempt outcomes.

Each Worker owns one :class:`SingleConnectionTransport`: one connection of the
project's own small HTTP/1.1 client (``_http11``; httpcore's pool is quadratic in its
connection count, and even one httpcore connection costs ~5x the CPU per request,
see that module). Its errors are httpcore's exception classes, mapped to outcomes
here in one table. All clients share one ``SSLContext`` because building one costs
~65 ms of CPU.
"""

from __future__ import annotations

import functools
import gzip
import json
import ssl
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import httpcore

from minimallm._attempts import AttemptError, AttemptOutcome, AttemptSuccess
from minimallm._explain import explanation, explanation_from_json
from minimallm._http11 import Http11Connection
from minimallm._http_reply import HttpReply
from minimallm._lazy_json import LazyJson
from minimallm._policy import is_overload_status, is_retryable_status, parse_retry_after
from minimallm._types import MinimaLlmRequest

__all__ = [
    "HttpReply",
    "HttpTransport",
    "SingleConnectionTransport",
    "build_payload",
    "encode_body",
    "outcome_from_exception",
    "outcome_from_reply",
    "request_headers",
    "shared_ssl_context",
    "timeout_outcome",
]

BODY_KEEP_CHARS = 4096
"""How much of a server's body an AttemptError keeps (decoded). More than a failure
shows (``_redact.SNIPPET_CHARS``, 300): the runtime redacts the key *before* it cuts
to that, so a key echoed across the cut is still found whole (``_redact.snippet``)."""


class HttpTransport(Protocol):
    """What a Worker needs from HTTP: POST a body, get the whole answer, close.

    A transport may also offer ``interrupt() -> None``: end the request in progress
    from another task at once (its ``post`` then raises one of
    :data:`TRANSPORT_EXCEPTIONS`). Workers on such a transport are bounded by the
    Watchdog; others by a cancel scope per attempt (see ``actors/worker.py``)."""

    async def post(self, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> HttpReply:
        """Send one POST to the chat-completions URL and read the whole answer."""
        ...

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        ...


@functools.cache
def shared_ssl_context() -> ssl.SSLContext:
    """The process-wide client SSLContext, built on first use (not at import)."""
    import certifi  # httpx's own CA bundle dependency

    return ssl.create_default_context(cafile=certifi.where())


class SingleConnectionTransport(Http11Connection):
    """One keep-alive connection to one URL (:class:`~minimallm._http11.Http11Connection`,
    which adds Host and Content-Length); reconnects when the server closes it. An
    ``https`` URL uses the process-wide :func:`shared_ssl_context` unless given one."""

    __slots__ = ()

    def __init__(self, url: str, *, ssl_context: ssl.SSLContext | None = None) -> None:
        if url.startswith("https:") and ssl_context is None:
            ssl_context = shared_ssl_context()
        super().__init__(url, ssl_context=ssl_context)


# -- request side ---------------------------------------------------------------------


def build_payload(model: str, req: MinimaLlmRequest) -> dict[str, Any]:
    """The JSON payload: model, messages as given, temperature and max_tokens when not
    None, then ``extra`` merged at the top level (it may override anything)."""
    payload: dict[str, Any] = {"model": model, "messages": [dict(m) for m in req.messages]}
    if req.temperature is not None:
        payload["temperature"] = req.temperature
    if req.max_tokens is not None:
        payload["max_tokens"] = req.max_tokens
    if req.extra:
        payload.update(req.extra)
    return payload


_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))
# json.dumps with any non-default argument builds a new encoder per call (~5 µs).


def encode_body(payload: Mapping[str, Any], *, compress: bool) -> bytes:
    """Serialise (and gzip when ``compress``) the payload: compact UTF-8 JSON."""
    body = _JSON.encode(payload).encode("utf-8")
    return gzip.compress(body, compresslevel=5) if compress else body


def request_headers(api_key: str | None, *, compress: bool) -> tuple[tuple[bytes, bytes], ...]:
    """Headers shared by every request of a backend (built once)."""
    headers = [(b"content-type", b"application/json"), (b"accept", b"application/json")]
    if compress:
        headers.append((b"content-encoding", b"gzip"))
    if api_key:
        headers.append((b"authorization", b"Bearer " + api_key.encode("latin-1")))
    return tuple(headers)


# -- outcomes -------------------------------------------------------------------------


def _snippet(body: bytes) -> str:
    return body[: BODY_KEEP_CHARS * 4].decode("utf-8", "replace")[:BODY_KEEP_CHARS]


def outcome_from_reply(
    reply: HttpReply, *, wall_clock: Callable[[], float] = time.time
) -> AttemptOutcome:
    """Classify a complete HTTP answer (SPEC §3.4). The message of an error carries the
    server's own explanation when it gives one (``HTTP 404: The model 'x' does not
    exist``, see ``_explain``). Never raises for anything in the answer."""
    status = reply.status
    if 200 <= status < 300:
        return _parse_success(reply)
    retryable = is_retryable_status(status)
    retry_after = parse_retry_after(reply.headers, now_wall=wall_clock()) if retryable else None
    why = explanation(reply.body)
    return AttemptError(
        error_type="HTTPError",
        message=f"HTTP {status}: {why}" if why else f"HTTP {status}",
        retryable=retryable,
        overload=is_overload_status(status),
        status=status,
        body_snippet=_snippet(reply.body),
        retry_after_s=retry_after,
    )


def _parse_success(reply: HttpReply) -> AttemptOutcome:
    try:
        data = json.loads(reply.body)
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        return _bad_body(reply, "MalformedResponse", f"2xx body is not JSON: {exc}", True)
    except RecursionError:
        return _bad_body(reply, "MalformedResponse", "2xx body is JSON nested too deep", True)
    except MemoryError:  # a body under the size cap that still cannot be decoded
        return _bad_body(reply, "MalformedResponse", "2xx body is too large to decode", True)
    if not isinstance(data, dict):
        return _bad_body(reply, "MalformedResponse", "2xx body is not a JSON object", True)
    choices = data.get("choices")
    if not isinstance(choices, list) or not choices:
        why = explanation_from_json(data)  # some proxies answer 200 with an "error"
        text = "2xx body has no 'choices'" + (f": {why}" if why else "")
        return _bad_body(reply, "MalformedResponse", text, True)
    first = choices[0]
    message = first.get("message") if isinstance(first, dict) else None
    content = message.get("content") if isinstance(message, dict) else None
    if not isinstance(content, str):
        # A refusal or a tool call: asking again gives the same answer.
        kind = "null" if content is None else type(content).__name__
        return _bad_body(
            reply, "EmptyContent", f"choices[0].message.content is {kind}, not text", False
        )
    usage = data.get("usage")
    raw = _keep_raw(reply.body, data)
    if isinstance(usage, dict):
        return AttemptSuccess(
            content,
            raw,
            _int_or_none(usage.get("prompt_tokens")),
            _int_or_none(usage.get("completion_tokens")),
            _int_or_none(usage.get("total_tokens")),
        )
    return AttemptSuccess(content, raw)


def _keep_raw(body: bytes, data: dict[str, Any]) -> Mapping[str, Any]:
    """The body as lazily decoded text (a quarter of the memory of ``data``)."""
    try:
        return LazyJson(body.decode("utf-8"))
    except UnicodeDecodeError:  # UTF-16/32 JSON: rare enough to keep decoded
        return data


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _bad_body(reply: HttpReply, error_type: str, message: str, retryable: bool) -> AttemptError:
    return AttemptError(
        error_type=error_type,
        message=message,
        retryable=retryable,
        status=reply.status,
        body_snippet=_snippet(reply.body),
    )


# Every exception the transport can raise, mapped once: (error_type, retryable).
# Order matters: subclasses before their bases.
_EXCEPTION_TABLE: tuple[tuple[type[BaseException], str, bool], ...] = (
    (httpcore.ConnectTimeout, "ConnectError", True),
    (httpcore.ConnectError, "ConnectError", True),
    (httpcore.ReadTimeout, "TimeoutError", True),
    (httpcore.WriteTimeout, "TimeoutError", True),
    (httpcore.PoolTimeout, "TimeoutError", True),
    (httpcore.ReadError, "ConnectionError", True),
    (httpcore.WriteError, "ConnectionError", True),
    (httpcore.RemoteProtocolError, "RemoteProtocolError", True),
    (httpcore.LocalProtocolError, "LocalProtocolError", False),
    (httpcore.ProtocolError, "RemoteProtocolError", True),
    (httpcore.UnsupportedProtocol, "UnsupportedProtocol", False),
    (httpcore.ProxyError, "ProxyError", True),
    (httpcore.ConnectionNotAvailable, "ConnectionError", True),  # pool-internal, mapped anyway
    (httpcore.NetworkError, "ConnectionError", True),
    (httpcore.TimeoutException, "TimeoutError", True),
    (OSError, "ConnectionError", True),
)

TRANSPORT_EXCEPTIONS: tuple[type[BaseException], ...] = tuple(row[0] for row in _EXCEPTION_TABLE)
"""What a Worker catches around ``post``: everything else is a bug and propagates."""


def outcome_from_exception(exc: BaseException) -> AttemptError:
    """Map a transport exception to an outcome (the only place this is done)."""
    for cls, error_type, retryable in _EXCEPTION_TABLE:
        if isinstance(exc, cls):
            status = 408 if error_type == "TimeoutError" else None
            detail = str(exc) or type(exc).__name__
            return AttemptError(
                error_type, f"{type(exc).__name__}: {detail}", retryable, False, status
            )
    raise TypeError(f"unmapped transport exception {type(exc).__name__}") from exc


def timeout_outcome(timeout_s: float) -> AttemptError:
    """The attempt did not finish within TIMEOUT_S (connect + send + wait + read)."""
    return AttemptError(
        "TimeoutError", f"attempt exceeded timeout_s={timeout_s:g}", True, False, 408
    )
