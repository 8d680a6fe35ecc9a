"""Which certificates the client trusts, and what a failed TLS handshake becomes.

Trust, in order (the first that is set wins, as in httpx and openai-python):

1. the ``CA_BUNDLE`` setting (``MinimaLlmConfig.ca_bundle``): a PEM file or a directory
   of hashed certificates;
2. ``SSL_CERT_FILE`` and/or ``SSL_CERT_DIR`` from the environment (OpenSSL's names);
3. certifi's bundle (Mozilla's roots).

Each *replaces* the default, like OpenSSL's own variables do: a bundle made for a
company proxy usually holds the public roots too. ``TLS_VERIFY=0`` turns verification
off (a lab server with a self-signed certificate); the runtime warns loudly.

Contexts are cached per trust choice: building one (loading certifi) costs ~65 ms of CPU,
and every Worker of every backend shares it.
"""

from __future__ import annotations

import functools
import os
import ssl
from collections.abc import Mapping
from typing import NamedTuple

from minimallm._http.errors import ConnectError, TLSVerificationError

__all__ = ["TlsTrust", "handshake_error", "ssl_context"]

TRUST_HINT = (
    "trust your CA with SSL_CERT_FILE=/path/ca.pem or CA_BUNDLE=/path/ca.pem "
    "(or TLS_VERIFY=0 for a lab server you trust)"
)


class TlsTrust(NamedTuple):
    """What to trust: ``cafile``/``capath`` (None: certifi), or nothing (``verify=False``).

    ``source`` says where the choice came from, for messages (``"CA_BUNDLE"``,
    ``"SSL_CERT_FILE"``, ``"certifi"``)."""

    cafile: str | None = None
    capath: str | None = None
    verify: bool = True
    source: str = "certifi"

    @classmethod
    def choose(cls, ca_bundle: str | None, verify: bool, env: Mapping[str, str]) -> TlsTrust:
        """The trust for a configuration: ``ca_bundle`` (file or directory) first, then
        ``SSL_CERT_FILE``/``SSL_CERT_DIR`` in ``env``, then certifi."""
        if not verify:
            return cls(verify=False, source="TLS_VERIFY=0")
        if ca_bundle:
            if os.path.isdir(ca_bundle):
                return cls(capath=ca_bundle, source="CA_BUNDLE")
            return cls(cafile=ca_bundle, source="CA_BUNDLE")
        cafile = env.get("SSL_CERT_FILE") or None
        capath = env.get("SSL_CERT_DIR") or None
        if cafile or capath:
            names = [n for n, v in (("SSL_CERT_FILE", cafile), ("SSL_CERT_DIR", capath)) if v]
            return cls(cafile=cafile, capath=capath, source=" and ".join(names))
        return cls()


@functools.cache
def ssl_context(trust: TlsTrust) -> ssl.SSLContext:
    """The client SSLContext for ``trust`` (built once per trust, shared). Raises
    FileNotFoundError / ssl.SSLError when a given bundle cannot be read."""
    if not trust.verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if trust.cafile is None and trust.capath is None:
        import certifi  # only when needed: the default trust

        return ssl.create_default_context(cafile=certifi.where())
    return ssl.create_default_context(cafile=trust.cafile, capath=trust.capath)


def handshake_error(exc: BaseException, host: str, port: int, trust: str) -> Exception:
    """What a failed handshake with ``host:port`` becomes: TLSVerificationError (not
    retried; says how to trust a CA) when the certificate was refused, else ConnectError.
    ``trust`` names what was trusted (``TlsTrust.source``)."""
    # trio's SSLStream wraps the ssl error (BrokenResourceError from it); ours raise it.
    cause = exc if isinstance(exc, OSError) else (exc.__cause__ or exc)
    if isinstance(cause, ssl.SSLCertVerificationError):
        reason = cause.verify_message or cause.reason or str(cause)
        return TLSVerificationError(
            f"certificate verify failed for host {host}:{port}: {reason} "
            f"(trusted: {trust}) - {TRUST_HINT}"
        )
    text = str(cause) or type(cause).__name__
    hint = ""
    if isinstance(cause, ssl.SSLError) and cause.reason == "WRONG_VERSION_NUMBER":
        hint = " (the server does not speak TLS there: is it an http:// endpoint?)"
    return ConnectError(f"TLS handshake with {host}:{port} failed: {text}{hint}")
