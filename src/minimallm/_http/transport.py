"""HTTP for one attempt: payload encoding, request headers, the single-connection
client. Its exceptions and answers become attempt outcomes in ``_outcome`` (one
table, ``_outcome/classify.py``; the names are re-exported here for the Worker).

Each Worker owns one :class:`SingleConnectionTransport`: one connection of the
project's own small HTTP/1.1 client (``minimallm._http``; httpcore's pool is quadratic
in its connection count, and even one httpcore connection costs ~5x the CPU per
request, see ``_http/connection.py``). Its errors are the ``_http.errors`` classes.
:func:`transport_factory_for` turns a
configuration into the factory a runtime builds its Workers' transports with: it reads
the proxy and CA variables once, at that moment, and all transports share one
``SSLContext`` (building one costs ~65 ms of CPU).
"""

from __future__ import annotations

import json
import os
import ssl
import warnings
import zlib
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from minimallm._http import errors as http_errors
from minimallm._http.connection import DEFAULT_MAX_RESPONSE_BYTES, Http11Connection
from minimallm._http.decode import ACCEPT_ENCODING
from minimallm._http.proxy import Proxy, ProxySettings
from minimallm._http.reply import HttpReply
from minimallm._http.tls import TlsTrust, ssl_context
from minimallm._outcome.classify import (
    TRANSPORT_EXCEPTIONS,
    outcome_from_exception,
    timeout_outcome,
)
from minimallm._outcome.reply import BODY_KEEP_CHARS, outcome_from_reply
from minimallm._types import MinimaLlmRequest
from minimallm._version import __version__

if TYPE_CHECKING:
    from minimallm._config.settings import MinimaLlmConfig

__all__ = [
    "BODY_KEEP_CHARS",
    "TRANSPORT_EXCEPTIONS",
    "USER_AGENT",
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


def transport_factory_for(
    cfg: MinimaLlmConfig,
    connection_class: type[SingleConnectionTransport] = SingleConnectionTransport,
) -> Callable[[str], SingleConnectionTransport]:
    """The transport factory for ``cfg`` (building ``connection_class`` objects; the
    provider Batch API client passes its subclass): proxy (``HTTP_PROXY``… unless
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
        return connection_class(
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
    """The JSON payload: the request's own ``model`` (else ``model``, the configured
    one), messages as given, temperature and max_tokens when not None, then ``extra``
    merged at the top level as given (it may override anything; ``sample`` is never
    sent)."""
    payload: dict[str, Any] = {
        "model": req.model or model,
        "messages": [dict(m) for m in req.messages],
    }
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
    return zlib.compress(body, 5, wbits=_GZIP) if compress else body


_GZIP = 16 + zlib.MAX_WBITS
"""zlib's gzip container (what ``gzip.compress(mtime=0)`` writes), without the gzip module."""


USER_AGENT = f"minimallm/{__version__}".encode("ascii")
"""Sent with every request (some gateways refuse requests without one)."""


def request_headers(api_key: str | None, *, compress: bool) -> tuple[tuple[bytes, bytes], ...]:
    """Headers shared by every request of a backend (built once), ``User-Agent:
    minimallm/<version>`` among them."""
    headers = [
        (b"user-agent", USER_AGENT),
        (b"content-type", b"application/json"),
        (b"accept", b"application/json"),
        (b"accept-encoding", ACCEPT_ENCODING),  # what the client decodes, no more
    ]
    if compress:
        headers.append((b"content-encoding", b"gzip"))
    if api_key:
        headers.append((b"authorization", b"Bearer " + api_key.encode("latin-1")))
    return tuple(headers)
