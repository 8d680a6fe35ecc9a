"""An endpoint's URL: what is wrong with it, and its API base (``.../v1``)."""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["api_base", "url_problem"]


def url_problem(value: str) -> str | None:
    """What is wrong with one endpoint's URL, or None."""
    if not value.lower().startswith(("http://", "https://")):
        return "must start with http:// or https://"
    try:  # urlsplit raises on a bad IPv6 literal, .port on a bad port
        parts = urlsplit(value)
        host, _ = parts.hostname, parts.port
    except ValueError:
        return "has an invalid host or port"
    if not host:
        return "must name a host, e.g. http://localhost:8000/v1"
    if parts.query or parts.fragment:
        return "must not contain a query (?) or fragment (#)"
    if "@" in parts.netloc:
        return (
            "must not contain a user name or password (user:password@host): minimallm "
            "does not send them; put the key in OPENAI_API_KEY"
        )
    return None


def api_base(url: str) -> str:
    return url if url.endswith("/v1") else url + "/v1"
