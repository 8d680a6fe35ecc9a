"""The Batch API's HTTP (``provider_batch._http``): any method and path under the API
root, a body sent from bytes and files, a chunked gzip answer streamed into a file,
against a real loopback server."""

from __future__ import annotations

import gzip
import io
from functools import partial
from pathlib import Path

import trio

from minimallm.cli.provider_batch._http import ApiConnection


async def test_a_file_goes_up_and_a_chunked_gzip_answer_streams_into_a_sink(
    tmp_path: Path,
) -> None:
    payload = b"".join(b'{"custom_id":"q%d"}\n' % i for i in range(5000))
    packed = gzip.compress(payload)
    received: list[bytes] = []

    async def serve(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        while len(body) < length:
            body += await stream.receive_some(65536)
        received.append(head + b"\r\n\r\n" + body)
        out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-encoding: gzip\r\n\r\n"
        for i in range(0, len(packed), 1000):
            piece = packed[i : i + 1000]
            out += b"%x\r\n" % len(piece) + piece + b"\r\n"
        await stream.send_all(out + b"0\r\n\r\n")
        await stream.aclose()

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, serve, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        conn = ApiConnection(f"http://127.0.0.1:{port}/v1/")
        upload = tmp_path / "up.jsonl"
        upload.write_bytes(b"line\n" * 1000)
        sink = io.BytesIO()
        reply = await conn.call(
            "POST", "/files?purpose=batch", [(b"x-test", b"1")], [b"head|", upload, b"|tail"],
            sink=sink,
        )  # fmt: skip
        nursery.cancel_scope.cancel()
    assert reply.status == 200 and reply.body == b""
    assert sink.getvalue() == payload
    request = received[0]
    assert request.startswith(b"POST /v1/files?purpose=batch HTTP/1.1\r\nhost: 127.0.0.1:")
    assert b"x-test: 1\r\n" in request and b"connection: close\r\n" in request
    assert request.endswith(b"\r\n\r\nhead|" + b"line\n" * 1000 + b"|tail")
