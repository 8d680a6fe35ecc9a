"""minimallm's own HTTP/1.1 client: one keep-alive connection per Worker.

- ``connection``: :class:`Http11Connection`, the request/answer exchange;
- ``dial``: opening a connection (TCP, proxy, CONNECT tunnel, TLS);
- ``reply``: :class:`HttpReply` and the head scanner;
- ``decode``: gzip/deflate bodies under the size cap;
- ``proxy``: proxies from the environment (urllib's rules);
- ``tls``: which CAs are trusted, what a failed handshake becomes;
- ``errors``: the layer's exception tree.
"""

from minimallm._http.connection import DEFAULT_MAX_RESPONSE_BYTES, Http11Connection
from minimallm._http.decode import ACCEPT_ENCODING
from minimallm._http.proxy import Proxy, ProxySettings
from minimallm._http.reply import HttpReply, LazyHeaders
from minimallm._http.tls import TlsTrust, ssl_context

__all__ = [
    "ACCEPT_ENCODING",
    "DEFAULT_MAX_RESPONSE_BYTES",
    "Http11Connection",
    "HttpReply",
    "LazyHeaders",
    "Proxy",
    "ProxySettings",
    "TlsTrust",
    "ssl_context",
]
