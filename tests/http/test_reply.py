"""An answer's head read for its framing (_http/reply.py: scan_head): a few byte
searches for the common ``HTTP/1.1 200`` head, one regex scan for any other, both
checked against the straightforward reading (a find per header name) they replaced, on
heads hypothesis builds from the headers that matter, mangled the ways servers do."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from minimallm._http.errors import RemoteProtocolError
from minimallm._http.reply import _scan_plain_200, scan_head


def _values(lower_head: bytes, key: bytes) -> list[bytes]:
    values: list[bytes] = []
    i = lower_head.find(key)
    while i >= 0:
        start = i + len(key)
        end = lower_head.find(b"\r\n", start)
        if end < 0:
            end = len(lower_head)
        values.append(lower_head[start:end].strip())
        i = lower_head.find(key, end)
    return values


def reference(raw: bytes) -> tuple[int, int | None, bool, bool, bytes | None]:
    """scan_head as it was: a find per header name in the lower-cased head."""
    end = raw.find(b"\r\n")
    status_line = raw if end < 0 else raw[:end]
    version, _, rest = status_line.partition(b" ")
    code = rest[:3]
    if (
        version not in (b"HTTP/1.1", b"HTTP/1.0")
        or len(code) != 3
        or not code.isdigit()
        or rest[3:4] not in (b"", b" ")
    ):
        raise RemoteProtocolError(f"malformed status line {status_line[:80]!r}")
    lower = raw.lower()
    keep_alive = version == b"HTTP/1.1"
    for value in _values(lower, b"\r\nconnection:"):
        tokens = {t.strip() for t in value.split(b",")}
        if b"close" in tokens:
            keep_alive = False
        elif b"keep-alive" in tokens:
            keep_alive = True
    encodings = _values(lower, b"\r\ncontent-encoding:")
    encoding = b",".join(encodings) if encodings else None
    codings = _values(lower, b"\r\ntransfer-encoding:")
    lengths = _values(lower, b"\r\ncontent-length:")
    if (
        not codings
        and not lengths
        and (b"content-length" in lower or b"transfer-encoding" in lower)
    ):
        raise RemoteProtocolError("malformed Content-Length or Transfer-Encoding header")
    if codings:
        chunked = codings[-1].rsplit(b",", 1)[-1].strip() == b"chunked"
        return int(code), None, chunked, keep_alive and chunked, encoding
    length: int | None = None
    for value in lengths:
        if not value.isdigit():
            raise RemoteProtocolError(f"bad Content-Length {value[:40]!r}")
        if length is not None and int(value) != length:
            raise RemoteProtocolError("conflicting Content-Length headers")
        length = int(value)
    return int(code), length, False, keep_alive, encoding


_NAMES = st.sampled_from(
    [
        b"Content-Length",
        b"content-length",
        b"CONTENT-LENGTH",
        b"Content-Length ",  # a space before the colon: malformed
        b"Transfer-Encoding",
        b"transfer-encoding",
        b"Content-Encoding",
        b"Connection",
        b"connection",
        b"Server",
        b"X-Content-Length-Note",
        b"content-lengthx",
        b"Vary",
        b"Content-Encoding ",
        b"Transfer-Encoding ",
    ]
)
_VALUES = st.sampled_from(
    [b"12", b" 12 ", b"0", b"-1", b"12, 12", b"7", b"chunked", b"gzip, chunked", b"gzip",
     b"br", b"close", b"keep-alive", b"Keep-Alive, Upgrade", b"a\rb", b"\t5\t", b"",
     b"Close", b" keep-alive ", b"close, keep-alive", b"keep-alive\r", b"accept-encoding",
     b"264", b"1x", b"\r\nContent-Length: 3"]
)  # fmt: skip
_STATUS = st.sampled_from(
    [b"HTTP/1.1 200 OK", b"HTTP/1.0 200 OK", b"HTTP/1.1 204", b"HTTP/1.1 100 Continue",
     b"HTTP/2 200", b"HTTP/1.1 20x OK", b"HTTP/1.1 200 ", b"HTTP/1.1 200", b"http/1.1 200 OK",
     b"HTTP/1.1 2000 OK", b"HTTP/1.1 200 OK\r\nContent-Length: 5"]
)  # fmt: skip


def _scan(scan: object, raw: bytes) -> object:
    try:
        return scan(raw)  # type: ignore[operator]
    except RemoteProtocolError as exc:
        return ("error", str(exc))


@given(_STATUS, st.lists(st.tuples(_NAMES, _VALUES), max_size=6))
def test_the_framing_read_is_the_straightforward_ones(
    status: bytes, headers: list[tuple[bytes, bytes]]
) -> None:
    raw = status + b"".join(b"\r\n" + name + b":" + value for name, value in headers)
    assert _scan(scan_head, raw) == _scan(reference, raw)


_COMMON = st.lists(
    st.sampled_from(
        [(b"Content-Length", b" 264"), (b"content-length", b"12"), (b"Connection", b"keep-alive"),
         (b"connection", b" close"), (b"Server", b"uvicorn"), (b"Vary", b"accept-encoding"),
         (b"X-RateLimit-Remaining-Requests", b"99"), (b"Content-Type", b"application/json")]
    ),
    max_size=6,
)  # fmt: skip


@given(_COMMON, st.lists(st.tuples(_NAMES, _VALUES), max_size=2))
@example(
    [(b"content-length", b"12"), (b"Connection", b"keep-alive"), (b"connection", b" close")], []
)
@example(
    [(b"content-length", b"12"), (b"connection", b" close"), (b"Connection", b"keep-alive")], []
)
def test_the_common_head_read_is_the_straightforward_one(
    common: list[tuple[bytes, bytes]], odd: list[tuple[bytes, bytes]]
) -> None:
    """The byte-search path on the heads it is meant for, and on those heads with an
    odd header or two: what it answers (when it answers) is the reference's."""
    raw = b"HTTP/1.1 200 OK" + b"".join(b"\r\n" + n + b":" + v for n, v in common + odd)
    fast = _scan_plain_200(raw.lower())
    if fast is not None:
        assert fast == reference(raw)
    assert _scan(scan_head, raw) == _scan(reference, raw)


@pytest.mark.parametrize(
    "raw",
    [
        b"HTTP/1.1 200 OK\r\nserver: minimallm\r\ncontent-type: application/json\r\n"
        b"content-length: 264\r\nconnection: keep-alive",
        b"HTTP/1.1 200 OK\r\ndate: Mon, 07 Dec 2026 06:00:00 GMT\r\nserver: uvicorn\r\n"
        b"Content-Length: 734\r\ncontent-type: application/json",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close",
    ],
)
def test_common_heads_take_the_byte_search_path(raw: bytes) -> None:
    assert _scan_plain_200(raw.lower()) == reference(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"HTTP/1.1 200 OK\r\ncontent-length: 255\r\nconnection: keep-alive",
         (200, 255, False, True, None)),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\nContent-Encoding: br",
         (200, None, True, True, b"br")),
        (b"HTTP/1.0 200 OK\r\nContent-Length: 3", (200, 3, False, False, None)),
        (b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0",
         (503, 0, False, False, None)),
    ],
)  # fmt: skip
def test_common_heads(raw: bytes, expected: tuple[object, ...]) -> None:
    assert scan_head(raw) == expected
