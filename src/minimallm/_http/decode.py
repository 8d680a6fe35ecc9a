"""Response bodies in ``Content-Encoding: gzip`` or ``deflate``, decoded under a size cap.

The client asks for these two (``Accept-Encoding: gzip, deflate``) and decodes them
whether asked for or not: RFC 9110 lets a server pick any encoding when none is asked
for, and an nginx with ``gzip on`` does. Anything else (``br``, ``zstd``…) is
:class:`UnsupportedContentEncoding`, naming it: asking again gets the same answer.

The cap holds for the decoded size too: output comes in steps of at most 1 MiB
(``zlib``'s ``max_length``), so a small "gzip bomb" stops just past the cap instead of
inflating whole.
Decoding runs once the (capped) body is complete; a JSON answer is a few KiB.
"""

from __future__ import annotations

import zlib

from minimallm._http.errors import DecodingError, ResponseTooLarge, UnsupportedContentEncoding

__all__ = ["ACCEPT_ENCODING", "decode_body"]

ACCEPT_ENCODING = b"gzip, deflate"
"""What the client announces: exactly what :func:`decode_body` can undo."""

_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_WBITS = -zlib.MAX_WBITS
_STEP = 1 << 20  # bytes of output per zlib call


def decode_body(body: bytes, encoding: bytes, cap: int) -> bytes:
    """Undo ``encoding`` (a Content-Encoding value, lower-case; codings applied in the
    order listed, so undone last to first). Raises UnsupportedContentEncoding,
    DecodingError (corrupt data) or ResponseTooLarge (decoded size over ``cap`` bytes)."""
    codings = [c.strip() for c in encoding.split(b",")]
    for coding in codings:
        if coding not in (b"gzip", b"x-gzip", b"deflate", b"identity", b""):
            shown = encoding.decode("latin-1")
            raise UnsupportedContentEncoding(
                f"the server answered with Content-Encoding: {shown}, which minimallm "
                f"cannot decode (it asks for {ACCEPT_ENCODING.decode()}); "
                f"'{coding.decode('latin-1')}' is not supported"
            )
    for coding in reversed(codings):
        if coding in (b"gzip", b"x-gzip"):
            body = _inflate(body, _GZIP_WBITS, cap, "gzip")
        elif coding == b"deflate":
            body = _inflate_deflate(body, cap)
    return body


def _inflate_deflate(body: bytes, cap: int) -> bytes:
    # "deflate" means zlib-wrapped (RFC 9110), but some servers send raw deflate.
    try:
        return _inflate(body, _ZLIB_WBITS, cap, "deflate")
    except DecodingError:
        return _inflate(body, _RAW_WBITS, cap, "deflate")


def _inflate(data: bytes, wbits: int, cap: int, name: str) -> bytes:
    out: list[bytes] = []
    size = 0
    while True:  # a gzip body may hold several members, one after the other
        inflater = zlib.decompressobj(wbits)
        try:
            while True:  # in steps, so a body over the cap costs the cap, not more
                piece = inflater.decompress(data, _STEP)
                size += len(piece)
                if size > cap:
                    raise ResponseTooLarge(
                        f"the {name}-encoded answer decodes to more than {cap} bytes "
                        "(the cap, MAX_RESPONSE_BYTES)"
                    )
                out.append(piece)
                data = inflater.unconsumed_tail
                if not data and len(piece) < _STEP:
                    break
            piece = inflater.flush()
        except zlib.error as exc:
            raise DecodingError(f"the {name}-encoded answer does not decode: {exc}") from exc
        size += len(piece)
        out.append(piece)
        if not inflater.eof:
            raise DecodingError(f"the {name}-encoded answer is cut short")
        data = inflater.unused_data
        if wbits != _GZIP_WBITS or not data:
            break
    if size > cap:
        raise ResponseTooLarge(
            f"the {name}-encoded answer decodes to more than {cap} bytes "
            "(the cap, MAX_RESPONSE_BYTES)"
        )
    return out[0] if len(out) == 1 else b"".join(out)
