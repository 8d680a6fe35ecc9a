"""HTTP for the provider's Batch API: any method, bodies streamed both ways.

:class:`ApiConnection` is the project's own HTTP/1.1 connection
(:class:`~minimallm._http.transport.SingleConnectionTransport`, built by the same
transport factory as a backend's Workers, so proxies from the environment, CA trust and
``TLS_VERIFY`` apply alike) with one more method, :meth:`ApiConnection.call`: a GET or
POST to any path of the API root, a request body sent from a list of parts or a file
(an upload of 200 MB is never held in memory), and the answer either read whole (JSON,
capped) or streamed into a file (a batch's output file). Every call opens a fresh
connection and closes it after: calls are seconds apart, and a fresh connection never
leaves the question "did the server get it?" to a stale keep-alive re-send.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

import trio

from minimallm._http.decode import decode_body
from minimallm._http.errors import (
    ProxyRejectedError,
    RemoteProtocolError,
    UnsupportedContentEncoding,
    WriteError,
)
from minimallm._http.framing import reason
from minimallm._http.reply import HttpReply, LazyHeaders
from minimallm._http.transport import SingleConnectionTransport

__all__ = ["ApiConnection", "Body"]

Body = Sequence[bytes | Path]
"""A request body: byte strings and files, sent in order."""

_PIECE = 1 << 20


class ApiConnection(SingleConnectionTransport):
    """One connection per call to the origin of the URL it was made with; ``call``
    puts its path after that URL's path (the API root, e.g. ``.../v1``)."""

    __slots__ = ()

    async def call(
        self,
        method: str,
        path: str,
        headers: Sequence[tuple[bytes, bytes]],
        body: Body = (),
        *,
        sink: BinaryIO | None = None,
    ) -> HttpReply:
        """Send ``method`` ``path`` with ``headers`` and ``body``; the answer, whole. With
        ``sink``, a 2xx body goes into it instead (the reply's body is then empty)."""
        if self._setup_error is not None:
            raise type(self._setup_error)(*self._setup_error.args)
        length = sum(p.stat().st_size if isinstance(p, Path) else len(p) for p in body)
        head = self._request_head(method, path, headers, length)
        self._close()
        try:
            await self._connect()
            await self._send_parts([head, *body])
            raw, status, length_in, chunked, _, encoding = await self._read_head()
            if status == 407 and self._proxy is not None:
                raise ProxyRejectedError(
                    f"{self._proxy.label} (from {self._proxy.source}) answered 407 Proxy "
                    f"Authentication Required: check the user:password in {self._proxy.source}"
                )
            if sink is not None and 200 <= status < 300:
                await self._stream_body(sink, length_in, chunked, encoding)
                return HttpReply(status, LazyHeaders(raw), b"")
            if chunked:
                answer = await self._read_chunked()
            elif length_in is not None:
                answer = await self._read_exact(min(length_in, self._cap))
            else:
                answer = await self._read_to_close()
            if encoding is not None:
                answer = decode_body(answer, encoding, self._cap)
            return HttpReply(status, LazyHeaders(raw), answer)
        finally:
            self._close()

    def _request_head(
        self, method: str, path: str, headers: Sequence[tuple[bytes, bytes]], length: int
    ) -> bytes:
        # The connection's own prefix is "POST <target of its URL> HTTP/1.1\r\nhost: ...":
        # keep the host (and a plain proxy's authorization), swap the request line.
        first, _, rest = self._prefix.partition(b"\r\n")
        target = first.split(b" ")[1].rstrip(b"/") + path.encode("ascii")
        lines = [method.encode("ascii") + b" " + target + b" HTTP/1.1\r\n" + rest]
        for name, value in headers:
            if b"\r" in name + value or b"\n" in name + value:
                raise ValueError(f"invalid header {name!r}")
            lines.append(name + b": " + value + b"\r\n")
        lines.append(b"connection: close\r\ncontent-length: %d\r\n\r\n" % length)
        return b"".join(lines)

    async def _send_parts(self, parts: Sequence[bytes | Path]) -> None:
        stream = self._stream
        if stream is None:
            raise WriteError("connection interrupted")
        self.requests += 1
        try:
            for part in parts:
                if isinstance(part, bytes):
                    await stream.send_all(part)
                    continue
                with part.open("rb") as f:
                    while piece := f.read(_PIECE):
                        await stream.send_all(piece)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise WriteError(reason(exc)) from exc

    async def _stream_body(
        self, sink: BinaryIO, length: int | None, chunked: bool, encoding: bytes | None
    ) -> None:
        inflate = _inflater(encoding)

        def put(data: bytes) -> None:
            sink.write(data if inflate is None else inflate.decompress(data))

        if chunked:
            while True:
                line = await self._read_until(b"\r\n", 1024, "chunk size line")
                size_text = line.split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    raise RemoteProtocolError(f"bad chunk size {size_text[:20]!r}") from None
                if size == 0:
                    while await self._read_until(b"\r\n", 1 << 16, "chunked trailer"):
                        pass
                    break
                while size:
                    piece = await self._read_exact(min(size, _PIECE))
                    put(piece)
                    size -= len(piece)
                if await self._read_exact(2) != b"\r\n":
                    raise RemoteProtocolError("chunk not followed by CRLF")
        elif length is not None:
            left = length
            while left:
                piece = await self._read_exact(min(left, _PIECE))
                put(piece)
                left -= len(piece)
        else:
            if self._buf:
                put(bytes(self._buf))
                self._buf.clear()
            while data := await self._receive():
                put(bytes(data))
        if inflate is not None:
            sink.write(inflate.flush())


def _inflater(encoding: bytes | None) -> zlib._Decompress | None:
    if encoding is None or encoding.strip() in (b"", b"identity"):
        return None
    if encoding.strip() in (b"gzip", b"x-gzip"):
        return zlib.decompressobj(16 + zlib.MAX_WBITS)
    if encoding.strip() == b"deflate":
        return zlib.decompressobj()
    raise UnsupportedContentEncoding(
        f"the server sent a file with Content-Encoding: {encoding.decode('latin-1')}, "
        "which minimallm cannot decode"
    )
