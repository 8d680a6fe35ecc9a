"""What the HTTP layer's troubles become for a request (through the whole backend):
an encoding it cannot decode is one failure, a stale keep-alive connection is no
attempt at all, a TLS request past TIMEOUT_S ends at its deadline."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from scripted import Peer, ok, read_request, serve

from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, MinimaLlmResult
from minimallm._backend import OpenAIMinimaLlm
from minimallm._config.settings import MinimaLlmConfig

ConfigFactory = Callable[..., MinimaLlmConfig]
Answer = Callable[[int, int], bytes | None]  # (connection, request on it) -> answer; None: hang up


def completion(text: str) -> bytes:
    return ok(json.dumps({"choices": [{"message": {"content": text}}]}).encode())


@asynccontextmanager
async def endpoint(
    answer: Answer, tls: ssl.SSLContext | None = None
) -> AsyncIterator[tuple[str, Peer]]:
    """A scripted endpoint; ``answer(connection, n)`` decides each answer."""
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        n = 0
        while await read_request(stream, box[0], buf):
            reply = answer(index, n)
            n += 1
            if reply is None:
                await stream.aclose()
                return
            await stream.send_all(reply)

    async with serve(handler, tls) as (url, peer):
        box.append(peer)
        yield url.split("/v1")[0] + "/v1", peer


async def ask(cfg: MinimaLlmConfig, *contents: str) -> list[MinimaLlmResult]:
    async with OpenAIMinimaLlm(cfg) as backend:
        return [
            await backend.generate(MinimaLlmRequest(c, [{"role": "user", "content": c}]))
            for c in contents
        ]


async def test_a_br_answer_is_one_failure_naming_the_encoding(make_config: ConfigFactory) -> None:
    br = b"HTTP/1.1 200 OK\r\ncontent-encoding: br\r\ncontent-length: 4\r\n\r\n\x8b\x00\x80\x03"
    async with endpoint(lambda c, n: br) as (base_url, peer):
        [result] = await ask(make_config(base_url=base_url, max_attempts=6), "x")
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.attempts) == ("UnsupportedContentEncoding", 1)
    assert "Content-Encoding: br" in result.message
    assert len(peer.requests) == 1


@pytest.fixture
def tls_pair() -> tuple[ssl.SSLContext, str]:
    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    return server, ca.cert_pem.bytes().decode()


@pytest.mark.parametrize("tls", [False, True])
async def test_a_stale_keep_alive_connection_costs_no_attempt(
    tls: bool,
    tls_pair: tuple[ssl.SSLContext, str],
    make_config: ConfigFactory,
    tmp_path: Any,
) -> None:
    """The server reads the second request on the kept-alive connection and closes it
    without a word; with MAX_ATTEMPTS=1 the request still succeeds, sent again at once."""

    def answer(connection: int, n: int) -> bytes | None:
        return None if connection == 0 and n == 1 else completion(f"c{connection}")

    settings: dict[str, Any] = {"max_attempts": 1, "max_outstanding": 1}
    server_ctx = None
    if tls:
        server_ctx, ca_pem = tls_pair
        (tmp_path / "ca.pem").write_text(ca_pem)
        settings["ca_bundle"] = str(tmp_path / "ca.pem")
    async with endpoint(answer, server_ctx) as (base_url, peer):
        if tls:
            base_url = base_url.replace("http://", "https://")
        first, second = await ask(make_config(base_url=base_url, **settings), "a", "b")
    assert isinstance(first, MinimaLlmResponse) and first.text == "c0"
    assert isinstance(second, MinimaLlmResponse) and second.text == "c1"
    assert [json.loads(body)["messages"][0]["content"] for _, body in peer.requests] == [
        "a",
        "b",
        "b",
    ]
    assert peer.connections == 2


async def test_a_tls_request_past_the_timeout_ends_at_its_deadline(
    tls_pair: tuple[ssl.SSLContext, str], make_config: ConfigFactory, tmp_path: Any
) -> None:
    server_ctx, ca_pem = tls_pair
    (tmp_path / "ca.pem").write_text(ca_pem)
    hung = trio.Event()

    async def never(stream: trio.SocketStream, index: int) -> None:
        await read_request(stream, Peer(), bytearray())
        hung.set()
        await trio.sleep_forever()

    async with serve(never, server_ctx) as (url, _):
        cfg = make_config(
            base_url=url.replace("http://", "https://").split("/v1")[0] + "/v1",
            ca_bundle=str(tmp_path / "ca.pem"),
            timeout_s=0.3,
            max_attempts=1,
        )
        start = trio.current_time()
        [result] = await ask(cfg, "x")
    assert hung.is_set()
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.status) == ("TimeoutError", 408)
    assert 0.3 <= trio.current_time() - start < 3
