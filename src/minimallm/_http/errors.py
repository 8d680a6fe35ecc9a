"""The HTTP layer's own exceptions. ``_outcome/classify.py`` maps each to an attempt
outcome in its one table (with a test that every class here is mapped); none reaches a user.

HttpError
├── TransportError                    the network failed us; usually worth a retry
│   ├── ConnectError                  no connection (refused, DNS, timeout, TLS handshake cut)
│   │   └── ProxyError                the proxy refused or failed (names the proxy)
│   │       └── ProxyRejectedError    the proxy said no for good (CONNECT answered 4xx, 407)
│   ├── ReadError                     reset or closed while reading the answer
│   └── WriteError                    reset or closed while sending the request
├── ProtocolError
│   ├── RemoteProtocolError           the server broke HTTP/1.1 (no answer, bad head, cut body)
│   │   └── DecodingError             a gzip/deflate body that does not decompress
│   └── LocalProtocolError            a header we were asked to send is invalid
├── UnsupportedProtocol               a URL or proxy scheme this client does not speak
├── TLSVerificationError              the server's certificate is not trusted (permanent)
├── UnsupportedContentEncoding        an answer in an encoding we cannot decode (permanent)
└── ResponseTooLarge                  an answer over the size cap (permanent)

Messages name the culprit (host and port, the proxy and the variable it came from,
the encoding, the cap) and, for the permanent ones, what the user can do about it.
"""

from __future__ import annotations

__all__ = [
    "ConnectError",
    "DecodingError",
    "HttpError",
    "LocalProtocolError",
    "ProtocolError",
    "ProxyError",
    "ProxyRejectedError",
    "ReadError",
    "RemoteProtocolError",
    "ResponseTooLarge",
    "TLSVerificationError",
    "TransportError",
    "UnsupportedContentEncoding",
    "UnsupportedProtocol",
    "WriteError",
]


class HttpError(Exception):
    """Root of the HTTP layer's exceptions."""


class TransportError(HttpError):
    """The connection failed; the same request may well succeed on a new one."""


class ConnectError(TransportError):
    """No connection could be opened (refused, unknown host, TLS handshake cut short)."""


class ProxyError(ConnectError):
    """The proxy could not be reached, or failed to open the tunnel (5xx)."""


class ProxyRejectedError(ProxyError):
    """The proxy refused the request for good (403 to CONNECT, 407 authentication)."""


class ReadError(TransportError):
    """The connection broke while the answer was being read."""


class WriteError(TransportError):
    """The connection broke while the request was being sent."""


class ProtocolError(HttpError):
    """One side broke HTTP/1.1."""


class RemoteProtocolError(ProtocolError):
    """The server's answer is not valid HTTP/1.1 (or it closed without one)."""


class DecodingError(RemoteProtocolError):
    """A body in gzip or deflate that does not decompress."""


class LocalProtocolError(ProtocolError):
    """We were asked to send something HTTP/1.1 cannot carry (a header with CR/LF)."""


class UnsupportedProtocol(HttpError):
    """A URL (or proxy URL) whose scheme this client does not speak."""


class TLSVerificationError(HttpError):
    """The server's certificate failed verification: asking again will not help."""


class UnsupportedContentEncoding(HttpError):
    """The answer came in a Content-Encoding other than gzip, deflate or identity."""


class ResponseTooLarge(HttpError):
    """The answer (on the wire or decoded) is larger than the configured cap."""
