"""A small sans-IO HTTP/1.1 request parser and response writer: the server side shared
by the mock server (:mod:`minimallm.mock`) and ``minimallm serve`` (:mod:`minimallm.serve`).

Hand-written rather than h11 because neither server may be the bottleneck of a
benchmark: this parser does one ``find`` and a few splits per request. Measured parse +
render of a typical request: ~15 µs here against ~120-150 µs with h11 0.16, when the
whole server then spent ~125 µs of CPU per request (the mock now spends ~60 µs serving
a fast client at latency 0: ``benchmarks/bench_core.py``'s server column).

It supports what OpenAI clients send: keep-alive, pipelining, ``Content-Length``
bodies, ``Expect: 100-continue`` and ``Content-Encoding: gzip``. Chunked request bodies
are refused with 411 (no OpenAI client sends them for a JSON body).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from http import HTTPStatus

__all__ = [
    "CONTINUE_RESPONSE",
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "HttpError",
    "HttpRequest",
    "RequestParser",
    "decode_body",
    "render_response",
]

MAX_HEAD_BYTES = 64 * 1024
"""Largest request line + headers accepted (bytes); more answers 431."""
MAX_BODY_BYTES = 64 * 1024 * 1024
"""Largest request body accepted, before and after gzip decoding (bytes); more answers 413."""
CONTINUE_RESPONSE = b"HTTP/1.1 100 Continue\r\n\r\n"


class HttpError(Exception):
    """The request cannot be served; answer ``status`` with ``message`` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """One parsed request. ``headers`` keys are lower case; repeated headers are joined
    with ", ". ``body`` is the raw (possibly gzip-encoded) body."""

    method: str
    target: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool

    @property
    def path(self) -> str:
        """The target without its query string."""
        return self.target.partition("?")[0]


@dataclass(frozen=True, slots=True)
class _Head:
    method: str
    target: str
    headers: dict[str, str]
    keep_alive: bool
    body_start: int
    body_len: int


def _parse_head(head: str, body_start: int) -> _Head:
    lines = head.split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise HttpError(400, f"bad request line {lines[0][:100]!r}")
    method, target, version = parts
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        raise HttpError(505, f"unsupported HTTP version {version[:20]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or name != name.strip():
            raise HttpError(400, f"bad header line {line[:100]!r}")
        key = name.lower()
        value = value.strip()
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    if "transfer-encoding" in headers:
        raise HttpError(411, "chunked request bodies are not supported; send Content-Length")
    length_text = headers.get("content-length", "0")
    if not length_text.isdigit():
        raise HttpError(400, f"bad Content-Length {length_text[:40]!r}")
    body_len = int(length_text)
    if body_len > MAX_BODY_BYTES:
        raise HttpError(413, f"request body of {body_len} bytes is larger than {MAX_BODY_BYTES}")
    connection = headers.get("connection", "").lower()
    keep_alive = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    return _Head(method, target, headers, keep_alive, body_start, body_len)


class RequestParser:
    """Feed bytes in, take complete requests out (pipelined requests come out in order).

    ``next_request`` raises HttpError for a request that cannot be served; the
    connection should then answer that status and close.
    """

    __slots__ = ("_buf", "_continue_sent", "_head")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._head: _Head | None = None
        self._continue_sent = False

    def feed(self, data: bytes) -> None:
        """Append bytes received from the client."""
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received but not yet consumed by a complete request."""
        return len(self._buf)

    def next_request(self) -> HttpRequest | None:
        """Return the next complete request, or None if more bytes are needed."""
        buf = self._buf
        head = self._head
        if head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise HttpError(431, "request head too large")
                return None
            if end > MAX_HEAD_BYTES:
                raise HttpError(431, "request head too large")
            head = _parse_head(buf[:end].decode("latin-1"), end + 4)
        stop = head.body_start + head.body_len
        if len(buf) < stop:
            self._head = head
            return None
        body = bytes(buf[head.body_start : stop])
        del buf[:stop]
        self._head = None
        self._continue_sent = False
        return HttpRequest(head.method, head.target, head.headers, body, head.keep_alive)

    def take_continue(self) -> bool:
        """True once per request whose client waits for ``100 Continue`` before its body."""
        head = self._head
        if head is None or self._continue_sent:
            return False
        if head.headers.get("expect", "").lower() != "100-continue":
            return False
        self._continue_sent = True
        return True


def decode_body(headers: dict[str, str], body: bytes) -> bytes:
    """Undo ``Content-Encoding`` (identity or gzip); HttpError 400/413/415 otherwise.

    zlib rather than ``gzip.decompress`` so the inflated size is bounded.
    """
    encoding = headers.get("content-encoding", "identity").strip().lower()
    if encoding in ("identity", ""):
        return body
    if encoding not in ("gzip", "x-gzip"):
        raise HttpError(415, f"unsupported Content-Encoding {encoding[:40]!r}")
    try:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        out = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise HttpError(400, f"bad gzip body: {exc}") from None
    if len(out) > MAX_BODY_BYTES:
        raise HttpError(413, "gzip body inflates past the size limit")
    if not inflater.eof:
        raise HttpError(400, "bad gzip body: truncated")
    return out


_REASONS = {s.value: s.phrase for s in HTTPStatus}
"""Reason phrases by status (``HTTPStatus(status)`` costs an enum lookup per answer)."""


def render_response(
    status: int,
    body: bytes,
    *,
    keep_alive: bool,
    content_type: str = "application/json",
    extra_headers: tuple[tuple[str, str], ...] = (),
    content_length: int | None = None,
    server: str = "minimallm",
) -> bytes:
    """Serialise one response; ``content_length`` overrides the true length (the mock's
    "cut" fault announces more bytes than it sends); ``server``: the Server header."""
    reason = _REASONS.get(status, "Unknown")
    length = len(body) if content_length is None else content_length
    lines = [
        f"HTTP/1.1 {status} {reason}",
        f"server: {server}",
        f"content-type: {content_type}",
        f"content-length: {length}",
        "connection: keep-alive" if keep_alive else "connection: close",
    ]
    lines.extend(f"{name}: {value}" for name, value in extra_headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
