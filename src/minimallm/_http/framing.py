"""Reading one HTTP/1.1 answer off a stream: the head (1xx skipped), then a body framed
by ``Content-Length``, ``Transfer-Encoding: chunked`` or the server closing, never more
than the cap (``max_response_bytes``, bytes). :class:`AnswerReader` is the base of
:class:`~minimallm._http.connection.Http11Connection`, which owns the stream; reading
shares its buffer, so bytes past one answer stay visible (and the connection is then
not reused)."""

from __future__ import annotations

import trio

from minimallm._http.errors import ReadError, RemoteProtocolError, ResponseTooLarge
from minimallm._http.reply import scan_head
from minimallm._http.streams import PlainSocket, TlsSocket

__all__ = ["MAX_HEAD_BYTES", "AnswerReader", "reason"]

MAX_HEAD_BYTES = 64 * 1024
"""Longest response head (status line + headers) accepted, bytes."""

_RECEIVE_BYTES = 64 * 1024


class AnswerReader:
    """The reading half of a connection: ``_stream`` (None when closed), ``_buf`` (bytes
    received, not yet consumed), ``_cap``; the subclass provides ``_close``."""

    __slots__ = ("_buf", "_cap", "_stream")

    def __init__(self, cap: int) -> None:
        self._stream: trio.abc.Stream | PlainSocket | TlsSocket | None = None
        self._buf = bytearray()
        self._cap = cap

    def _close(self) -> None:
        raise NotImplementedError

    async def _receive(self, *, answer: bool = False) -> bytes | bytearray:
        """The next bytes (b"" at EOF); ``answer``: the first of the answer to a request
        just sent (the stream waits before it reads, see ``PlainSocket.receive_answer``)."""
        stream = self._stream
        if stream is None:
            raise ReadError("connection interrupted")
        try:
            if answer and type(stream) is PlainSocket:  # TLS reads its buffer first anyway
                return await stream.receive_answer(_RECEIVE_BYTES)
            return await stream.receive_some(_RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            raise ReadError(reason(exc)) from exc

    async def _read_head(self) -> tuple[bytes, int, int | None, bool, bool, bytes | None]:
        """The raw head, its framing and encoding (see ``reply.scan_head``); 1xx skipped."""
        while True:
            raw = await self._read_until(b"\r\n\r\n", MAX_HEAD_BYTES, "response head")
            status, length, chunked, keep_alive, encoding = scan_head(raw)
            if status >= 200:
                return raw, status, length, chunked, keep_alive, encoding
            if status == 101:
                raise RemoteProtocolError("unexpected 101 Switching Protocols")

    async def _read_until(self, marker: bytes, limit: int, what: str) -> bytes:
        buf = self._buf
        start = 0
        while True:
            end = buf.find(marker, start)
            if end >= 0:
                found = bytes(buf[:end])
                del buf[: end + len(marker)]
                return found
            if len(buf) > limit:
                raise RemoteProtocolError(f"{what} longer than {limit} bytes")
            start = max(0, len(buf) - len(marker) + 1)
            data = await self._receive()
            if not data:
                raise RemoteProtocolError(f"peer closed connection inside the {what}")
            buf += data

    async def _read_exact(self, n: int) -> bytes:
        buf = self._buf
        while len(buf) < n:
            data = await self._receive()
            if not data:
                raise RemoteProtocolError(
                    "peer closed connection without sending complete message body: "
                    f"received {len(buf)} bytes, expected {n}"
                )
            buf += data
        if len(buf) == n:
            out = bytes(buf)
            buf.clear()
            return out
        out = bytes(buf[:n])
        del buf[:n]
        return out

    async def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            line = await self._read_until(b"\r\n", 1024, "chunk size line")
            size_text = line.split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise RemoteProtocolError(f"bad chunk size {size_text[:20]!r}") from None
            if size < 0 or not size_text.isalnum():
                raise RemoteProtocolError(f"bad chunk size {size_text[:20]!r}")
            if size == 0:
                trailer = 0
                while line := await self._read_until(b"\r\n", MAX_HEAD_BYTES, "chunked trailer"):
                    trailer += len(line)
                    if trailer > MAX_HEAD_BYTES:
                        raise RemoteProtocolError(f"chunked trailer longer than {MAX_HEAD_BYTES}")
                return b"".join(parts)
            total += size
            if total > self._cap:
                raise ResponseTooLarge(
                    f"the chunked answer grew past the cap of {self._cap} bytes "
                    "(MAX_RESPONSE_BYTES)"
                )
            parts.append(await self._read_exact(size))
            if await self._read_exact(2) != b"\r\n":
                raise RemoteProtocolError("chunk not followed by CRLF")

    async def _read_to_close(self) -> bytes:
        # Neither Content-Length nor chunked: the answer ends when the server closes.
        while data := await self._receive():
            self._buf += data
            if len(self._buf) > self._cap:
                raise ResponseTooLarge(
                    f"the answer (framed by the server closing) grew past the cap of "
                    f"{self._cap} bytes (MAX_RESPONSE_BYTES)"
                )
        out = bytes(self._buf)
        self._close()
        return out


def reason(exc: BaseException) -> str:
    """The text of a stream error: an OSError's own, else (trio's Broken/Closed
    ResourceError) its cause's."""
    cause = exc if isinstance(exc, OSError) else exc.__cause__
    text = str(cause) if cause is not None and str(cause) else str(exc)
    return text or type(exc).__name__
