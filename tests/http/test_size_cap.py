"""The response size cap holds memory down: a 200 MB body and an endless one each end
as one failure, in a child process whose peak RSS is measured (cap + 100 MB at most)."""

from __future__ import annotations

import contextlib
import gzip
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest
import trio
from scripted import Peer, read_request, serve

CHILD = Path(__file__).with_name("_cap_child.py")
MB = 1_000_000
BLOCK = b"x" * (1 << 20)


async def send_200mb(stream: trio.SocketStream) -> None:
    for _ in range(200 * MB // len(BLOCK)):
        await stream.send_all(BLOCK)


async def send_forever(stream: trio.SocketStream) -> None:
    while True:
        await stream.send_all(BLOCK)


async def content_length_200mb(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % (200 * MB))
    await send_200mb(stream)


async def close_framed_200mb(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n")
    await send_200mb(stream)


async def chunked_endless(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
    while True:
        await stream.send_all(b"%x\r\n%s\r\n" % (len(BLOCK), BLOCK))


async def close_framed_endless(stream: trio.SocketStream) -> None:
    await stream.send_all(b"HTTP/1.1 200 OK\r\n\r\n")
    await send_forever(stream)


async def gzip_bomb_200mb(stream: trio.SocketStream) -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    zeros = bytes(1 << 20)
    bomb = b"".join(packer.compress(zeros) for _ in range(200)) + packer.flush()
    assert len(gzip.decompress(bomb)) == 200 * (1 << 20)
    head = b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: %d\r\n\r\n"
    await stream.send_all(head % len(bomb) + bomb)


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (content_length_200mb, "Content-Length: 200000000"),
        (close_framed_200mb, "framed by the server closing"),
        (chunked_endless, "chunked answer grew past"),
        (close_framed_endless, "framed by the server closing"),
        (gzip_bomb_200mb, "gzip-encoded answer decodes to more than"),
    ],
)
async def test_a_huge_or_endless_body_is_one_failure_within_the_cap(
    answer: Any, message: str
) -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        await read_request(stream, box[0], bytearray())
        # the client hanging up is what the cap is for
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await answer(stream)

    async with serve(handler) as (url, peer):
        box.append(peer)
        base_url = url.split("/v1")[0] + "/v1"
        with trio.fail_after(60):
            done = await trio.run_process(
                [sys.executable, str(CHILD), base_url], capture_stdout=True, capture_stderr=True
            )
    report = json.loads(done.stdout)
    assert (report["error_type"], report["attempts"]) == ("ResponseTooLarge", 1), report
    assert message in report["message"]
    assert report["cap"] == 64 * 1024 * 1024
    assert report["rss_peak"] < report["cap"] + 100 * MB, report
    assert peer.connections == 1
    print(
        f"{answer.__name__}: peak RSS {report['rss_peak'] / MB:.0f} MB "
        f"(before the request {report['rss_before'] / MB:.0f} MB)"
    )
