"""Proxies from the environment, with the conventions of ``urllib.request`` and httpx.

Which variables: urllib's own parser, :func:`urllib.request.getproxies_environment`,
reads every ``<scheme>_proxy`` variable in either case. Lower case wins over upper case
(an empty ``http_proxy=`` unsets ``HTTP_PROXY``), and when ``REQUEST_METHOD`` is set (a
CGI script) upper-case ``HTTP_PROXY`` is ignored, since a client can set it through a
``Proxy:`` header (CVE-2016-1000110). We reuse it rather than re-implement it: it is
what the original library (urllib) did, and httpx calls the same function.

Which proxy for a URL: ``HTTPS_PROXY`` for ``https://`` endpoints, ``HTTP_PROXY`` for
``http://``, else ``ALL_PROXY`` (httpx and curl; urllib alone ignores ``ALL_PROXY``).

Who bypasses it: :func:`urllib.request.proxy_bypass_environment` on ``NO_PROXY``:
``*`` (everything), a host (``localhost``, ``10.1.2.3``), a domain suffix
(``example.com`` and ``.example.com`` both match ``api.example.com`` but not
``badexample.com``), and ``host:port``. No CIDR ranges (urllib has none; httpx neither).

How: an ``http://`` endpoint is requested from the proxy in absolute form
(``POST http://host/path``); an ``https://`` endpoint through a ``CONNECT`` tunnel
(:func:`open_tunnel`), TLS end to end. Credentials in the proxy URL
(``http://user:pass@proxy:3128``, percent-encoded) go out as ``Proxy-Authorization:
Basic``. Proxies are ``http://`` or ``https://`` (TLS to the proxy); ``socks5://`` and
others are refused with a message naming the variable.

The environment is read once, when a backend's runtime starts
(:meth:`ProxySettings.from_environment`), never per request. ``urllib.request`` (with
``http.client`` and ``email``, ~6 ms of import) is imported only when a ``*_proxy``
variable is set.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from typing import NamedTuple
from urllib.parse import unquote, urlsplit

import trio

from minimallm._http.errors import ProxyError, ProxyRejectedError, RemoteProtocolError
from minimallm._http.reply import scan_head

__all__ = ["Proxy", "ProxySettings", "open_tunnel", "proxy_secrets"]

_MAX_CONNECT_HEAD = 16 * 1024


class Proxy(NamedTuple):
    """One forward proxy. ``source`` is the variable it came from (for messages);
    ``authorization`` the ``Proxy-Authorization`` value, or None. The repr hides it."""

    scheme: str
    host: str
    port: int
    source: str
    authorization: bytes | None = None

    def __repr__(self) -> str:
        creds = " with credentials" if self.authorization else ""
        return f"<Proxy {self.scheme}://{self.host}:{self.port}{creds} from {self.source}>"

    @property
    def label(self) -> str:
        """How messages name it: ``proxy 127.0.0.1:8888``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"proxy {host}:{self.port}"

    @property
    def secrets(self) -> tuple[str, ...]:
        """Its credentials as a message must never show them: the ``Basic`` token as
        sent, the ``user:password`` it encodes and the password alone (each of at least
        4 characters: shorter ones cannot be told from ordinary text)."""
        if self.authorization is None:
            return ()
        token = self.authorization.removeprefix(b"Basic ").decode("ascii")
        user_pass = base64.b64decode(token).decode("utf-8", "replace")
        found = (token, user_pass, user_pass.partition(":")[2])
        return tuple(dict.fromkeys(s for s in found if len(s) >= 4))

    @classmethod
    def parse(cls, url: str, source: str) -> Proxy:
        """A proxy from a ``*_PROXY`` value. Raises ValueError naming ``source`` when the
        value is not an ``http://`` or ``https://`` URL with a host."""
        text = url.strip()
        if "://" not in text:  # "proxy:3128", as curl and httpx accept it
            text = "http://" + text
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"{source} has an invalid proxy URL ({exc})") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(
                f"{source} names a {scheme}:// proxy, which minimallm does not support: "
                "use an http:// (or https://) proxy, or TRUST_ENV_PROXY=0 to ignore it"
            )
        if not parts.hostname:
            raise ValueError(f"{source} has no proxy host")
        auth = None
        if parts.username is not None or parts.password is not None:
            user_pass = f"{unquote(parts.username or '')}:{unquote(parts.password or '')}"
            auth = b"Basic " + base64.b64encode(user_pass.encode("utf-8"))
        default = 443 if scheme == "https" else 80
        return cls(scheme, parts.hostname, port or default, source, auth)


class ProxySettings(NamedTuple):
    """The proxy variables as urllib reads them: ``proxies`` maps a scheme (``http``,
    ``https``, ``all``, ``no``) to its value, ``names`` the scheme to the variable it
    came from (``HTTPS_PROXY`` or ``https_proxy``)."""

    proxies: Mapping[str, str]
    names: Mapping[str, str]

    @classmethod
    def from_environment(cls) -> ProxySettings:
        """Read the process environment now (urllib's rules, see the module docstring)."""
        if not any(name[-6:].lower() == "_proxy" for name in os.environ):
            return cls({}, {})  # what urllib would find, without importing it
        import urllib.request

        proxies = urllib.request.getproxies_environment()
        names = {}
        for scheme, value in proxies.items():
            lower = f"{scheme}_proxy"
            names[scheme] = lower if os.environ.get(lower) == value else lower.upper()
        return cls(proxies, names)

    def proxy_for(self, url: str) -> Proxy | None:
        """The proxy for ``url``, or None (no variable, or ``NO_PROXY`` matches).
        Raises ValueError naming the variable when its proxy URL cannot be used."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        key = scheme if self.proxies.get(scheme) else "all"
        value = self.proxies.get(key)
        if not value:
            return None
        import urllib.request

        # Public and documented, but missing from typeshed's stubs.
        bypass = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]
        if bypass(parts.netloc.lower(), self.proxies):
            return None
        return Proxy.parse(value, self.names.get(key, f"{key.upper()}_PROXY"))


def proxy_secrets(url: str, *, trust_env: bool = True) -> tuple[str, ...]:
    """The credentials (:attr:`Proxy.secrets`) of the proxy the environment names for
    ``url``; none without one, with ``trust_env`` off, or when its variable cannot be
    used (its message never quotes the URL)."""
    if not trust_env:
        return ()
    try:
        proxy = ProxySettings.from_environment().proxy_for(url)
    except ValueError:
        return ()
    return () if proxy is None else proxy.secrets


async def open_tunnel(stream: trio.abc.Stream, authority: str, proxy: Proxy) -> None:
    """Ask ``proxy`` (already connected as ``stream``) for a tunnel to ``authority``
    (``host:port``). Returns when it answers 2xx; raises ProxyRejectedError (4xx) or
    ProxyError (anything else, or a connection that ends), naming the proxy."""
    lines = [f"CONNECT {authority} HTTP/1.1", f"host: {authority}"]
    request = ("\r\n".join(lines) + "\r\n").encode("ascii")
    if proxy.authorization is not None:
        request += b"proxy-authorization: " + proxy.authorization + b"\r\n"
    where = f"{proxy.label} (from {proxy.source})"
    try:
        await stream.send_all(request + b"\r\n")
        head = bytearray()
        while b"\r\n\r\n" not in head:
            if len(head) > _MAX_CONNECT_HEAD:
                raise ProxyError(f"{where} sent an oversized answer to CONNECT {authority}")
            data = await stream.receive_some(_MAX_CONNECT_HEAD)
            if not data:
                raise ProxyError(f"{where} closed the connection during CONNECT {authority}")
            head += data
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
        raise ProxyError(f"{where} failed during CONNECT {authority}: {exc}") from exc
    raw, _, rest = bytes(head).partition(b"\r\n\r\n")
    try:
        status = scan_head(raw)[0]
    except RemoteProtocolError as exc:  # the proxy does not speak HTTP
        raise ProxyError(f"{where} answered CONNECT {authority} with {raw[:60]!r}") from exc
    if 200 <= status < 300 and not rest:
        return
    reason = raw.split(b"\r\n", 1)[0].decode("latin-1")
    message = f"{where} answered CONNECT {authority} with {reason!r}"
    if status in (401, 407):  # 407 is the standard; tinyproxy answers 401 to a bad password
        raise ProxyRejectedError(f"{message}: check the user:password in {proxy.source}")
    if 400 <= status < 500:
        raise ProxyRejectedError(message)
    raise ProxyError(message)
