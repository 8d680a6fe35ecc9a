"""Who may use ``minimallm serve``: the bind check and the client key check.

On a loopback address the server is reachable from this machine only, and needs no
key (one can still be set). Any other address exposes the backend's API key's spending
to the network, so it needs ``MINIMALLM_SERVE_KEY``; clients then send
``Authorization: Bearer <key>``. The key is compared in constant time and never
printed; the client's Authorization header is never forwarded upstream (the backend
sends its own key).
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Mapping

__all__ = ["KEY_ENV", "ServeKeyError", "check_bind", "is_loopback", "key_accepted"]

KEY_ENV = "MINIMALLM_SERVE_KEY"
"""The environment variable holding the key clients must present."""


class ServeKeyError(Exception):
    """A non-loopback bind without ``MINIMALLM_SERVE_KEY``."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def check_bind(host: str, env: Mapping[str, str]) -> bytes | None:
    """The key clients must present (None: none needed), or :class:`ServeKeyError`
    when ``host`` is not loopback and no key is set."""
    key = env.get(KEY_ENV, "").strip()
    if key:
        return key.encode("utf-8")
    if is_loopback(host):
        return None
    raise ServeKeyError(
        f"binding {host!r} (not loopback) would let anyone who can reach it spend your "
        f"API key: set {KEY_ENV} to a secret that clients send as 'Authorization: Bearer "
        "<key>' (their OPENAI_API_KEY), or bind 127.0.0.1"
    )


def key_accepted(expected: bytes | None, authorization: str | None) -> bool:
    """True when no key is needed or ``authorization`` is ``Bearer <expected>``
    (compared in constant time)."""
    if expected is None:
        return True
    scheme, _, given = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(given.strip().encode("utf-8"), expected)
