"""HTTP for one attempt: payload encoding, the single-connection client, and the one
place where transport exceptions and HTTP answers become attempt outcomes.

Each Worker owns one :class:`SingleConnectionTransport`: one connection of the
project's own small HTTP/1.1 client (``minimallm._http``; httpcore's pool is quadratic
in its connection count, and even one httpcore connection costs ~5x the CPU per
request, see ``_http/connection.py``). Its errors are the ``_http.errors`` classes,
mapped to outcomes here in one table. :func:`transport_factory_for` turns a
configuration into the factory a runtime builds its Workers' transports with: it reads
the proxy and CA variables once, at that moment, and all transports share one
``SSLContext`` (building one costs ~65 ms of CPU).
"""

from __future__ import annotations

import gzip
import json
import os
import ssl
import time
import warnings
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from minimallm._http import errors as http_errors
from minimallm._http.connection import DEFAULT_MAX_RESPONSE_BYTES, Http11Connection
from minimallm._http.decode import ACCEPT_ENCODING
from minimallm._http.proxy import Proxy, ProxySettings
from minimallm._http.reply import HttpReply
from minimallm._http.tls import TlsTrust, ssl_context
from minimallm._lazy_json import LazyJson
from minimallm._outcome.attempts import AttemptError, AttemptOutcome, AttemptSuccess
from minimallm._outcome.explain import explanation, explanation_from_json
from minimallm._policy.ratelimit import RateLimitInfo, parse_rate_limit_headers
from minimallm._policy.retry import is_overload_status, is_retryable_status, parse_retry_after
from minimallm._types import MinimaLlmRequest

if TYPE_CHECKING:
    from minimallm._config.settings import MinimaLlmConfig

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
    "transport_factory_for",
]

BODY_KEEP_CHARS = 4096
"""How much of a server's body an AttemptError keeps (decoded). More than a failure
shows (``_redact.SNIPPET_CHARS``, 300): the runtime redacts the key *before* it cuts
to that, so a key echoed across the cut is still found whole (``_redact.snippet``)."""


class HttpTransport(Protocol):
    """What a Worker needs from HTTP: POST a body and get the whole answer, end the
    request in progress from another task, close."""

    async def post(self, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> HttpReply:
        """Send one POST to the chat-completions URL and read the whole answer."""
        ...

    def interrupt(self) -> None:
        """End the request in progress at once (its ``post`` then raises one of
        :data:`TRANSPORT_EXCEPTIONS`); no-op when idle. Called from another task."""
        ...

    async def aclose(self) -> None:
        """Close the connection (idempotent)."""
        ...


def shared_ssl_context() -> ssl.SSLContext:
    """The process-wide default client SSLContext (certifi), built on first use."""
    return ssl_context(TlsTrust())


class SingleConnectionTransport(Http11Connection):
    """One keep-alive connection to one URL (:class:`~minimallm._http.Http11Connection`,
    which adds Host and Content-Length); reconnects when the server closes it. An
    ``https`` URL uses the process-wide :func:`shared_ssl_context` unless given one.
    Direct, with the default size cap, unless told otherwise: a runtime builds its
    transports with :func:`transport_factory_for`."""

    __slots__ = ()

    def __init__(
        self,
        url: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        trust: str = "certifi",
        proxy: Proxy | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        setup_error: http_errors.HttpError | None = None,
    ) -> None:
        needs_tls = url.startswith("https:") or (proxy is not None and proxy.scheme == "https")
        if needs_tls and ssl_context is None and setup_error is None:
            ssl_context = shared_ssl_context()
        super().__init__(
            url,
            ssl_context=ssl_context,
            trust=trust,
            proxy=proxy,
            max_response_bytes=max_response_bytes,
            setup_error=setup_error,
        )


_INSECURE_WARNING = (
    "minimallm: TLS certificate verification is OFF (TLS_VERIFY=0 / tls_verify=False): "
    "anyone on the network path can read and change your requests, API key included. "
    "Trust the server's CA instead with CA_BUNDLE=/path/ca.pem or SSL_CERT_FILE."
)


def transport_factory_for(cfg: MinimaLlmConfig) -> Callable[[str], SingleConnectionTransport]:
    """The transport factory for ``cfg``: proxy (``HTTP_PROXY``… unless
    ``trust_env_proxy`` is off), CA trust (``ca_bundle``, else ``SSL_CERT_FILE`` /
    ``SSL_CERT_DIR``, else certifi; none with ``tls_verify=False``, which warns) and
    the size cap. Reads the environment now, once: call it when a runtime starts, not
    per request.

    A proxy variable that cannot be used (``ALL_PROXY=socks5://…``) or a CA file that
    cannot be read (``SSL_CERT_FILE``) does not raise here: every request that needs it
    fails, not retried, with a message naming the variable."""
    trust = TlsTrust.choose(cfg.ca_bundle, cfg.tls_verify, os.environ)
    if not trust.verify:
        warnings.warn(_INSECURE_WARNING, RuntimeWarning, stacklevel=2)
    settings = ProxySettings.from_environment() if cfg.trust_env_proxy else None
    cap = cfg.max_response_bytes

    def factory(url: str) -> SingleConnectionTransport:
        proxy: Proxy | None = None
        context: ssl.SSLContext | None = None
        setup_error: http_errors.HttpError | None = None
        if settings is not None:
            try:
                proxy = settings.proxy_for(url)
            except ValueError as exc:
                setup_error = http_errors.UnsupportedProtocol(str(exc))
        if url.startswith("https:") or (proxy is not None and proxy.scheme == "https"):
            try:
                context = ssl_context(trust)
            except (OSError, ssl.SSLError) as exc:
                setup_error = http_errors.TLSVerificationError(
                    f"the CA certificates from {trust.source} cannot be loaded ({exc}): "
                    "point it at a PEM file, or unset it to trust certifi's bundle"
                )
        return SingleConnectionTransport(
            url,
            ssl_context=context,
            trust=trust.source,
            proxy=proxy,
            max_response_bytes=cap,
            setup_error=setup_error,
        )

    return factory


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
    headers = [
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"accept-encoding", ACCEPT_ENCODING),  # what the client decodes, no more
    ]
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
    rate = _rate_info(reply.headers, wall_clock)
    if 200 <= status < 300:
        return _parse_success(reply, rate)
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
        rate=rate,
    )


def _rate_info(headers: Mapping[str, str], wall_clock: Callable[[], float]) -> RateLimitInfo | None:
    """The answer's ``x-ratelimit-*`` headers; a look at the raw head first, so an
    answer without them (most servers) costs no header parsing."""
    mentions = getattr(headers, "mentions", None)
    if mentions is not None and not mentions(b"x-ratelimit-"):
        return None
    return parse_rate_limit_headers(headers, now_wall=wall_clock())


def _parse_success(reply: HttpReply, rate: RateLimitInfo | None) -> AttemptOutcome:
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
            rate,
        )
    return AttemptSuccess(content, raw, rate=rate)


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
# Order matters: subclasses before their bases. Not retried: what asking again cannot
# change (a certificate we do not trust, an encoding we cannot decode, a body over the
# cap, a proxy that said no, a request we cannot send).
_E = http_errors
_EXCEPTION_TABLE: tuple[tuple[type[BaseException], str, bool], ...] = (
    (_E.TLSVerificationError, "TLSVerificationError", False),
    (_E.UnsupportedContentEncoding, "UnsupportedContentEncoding", False),
    (_E.ResponseTooLarge, "ResponseTooLarge", False),
    (_E.UnsupportedProtocol, "UnsupportedProtocol", False),
    (_E.LocalProtocolError, "LocalProtocolError", False),
    (_E.ProxyRejectedError, "ProxyError", False),
    (_E.ProxyError, "ProxyError", True),
    (_E.ConnectError, "ConnectError", True),
    (_E.ReadError, "ConnectionError", True),
    (_E.WriteError, "ConnectionError", True),
    (_E.TransportError, "ConnectionError", True),
    (_E.DecodingError, "DecodingError", True),
    (_E.RemoteProtocolError, "RemoteProtocolError", True),
    (_E.ProtocolError, "RemoteProtocolError", True),
    (_E.HttpError, "HttpError", True),
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
