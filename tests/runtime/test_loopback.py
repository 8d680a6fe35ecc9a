"""The request path over real loopback HTTP against the project's mock server (trio)."""

from __future__ import annotations

import socket
from collections.abc import Callable

import pytest
import trio

from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, MinimaLlmResult
from minimallm._backend import OpenAIMinimaLlm
from minimallm.mock import MockServerThread

Factory = Callable[..., OpenAIMinimaLlm]


def ask(content: str, rid: str = "r1", **kw: object) -> MinimaLlmRequest:
    return MinimaLlmRequest(rid, [{"role": "user", "content": content}], **kw)  # type: ignore[arg-type]


async def one(backend: OpenAIMinimaLlm, content: str) -> MinimaLlmResult:
    async with backend:
        return await backend.generate(ask(content))


async def test_success_and_the_payload_on_the_wire(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    req = MinimaLlmRequest(
        "q-7",
        [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello", "name": "u1"},
        ],
        temperature=0.5,
        max_tokens=12,
        extra={"top_p": 0.9},
    )
    async with make_backend() as backend:
        result = await backend.generate(req)
    assert isinstance(result, MinimaLlmResponse)
    assert (result.request_id, result.text, result.cached) == ("q-7", "echo: hello", False)
    assert result.total_tokens is not None and result.raw is not None
    [seen] = mock_server.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.body == {
        "model": "mock-model",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello", "name": "u1"},
        ],
        "temperature": 0.5,
        "max_tokens": 12,
        "top_p": 0.9,
    }
    assert seen.headers["authorization"].startswith("Bearer sk-test")


async def test_no_key_means_no_authorization_header(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    assert isinstance(await one(make_backend(api_key=None), "x"), MinimaLlmResponse)
    assert "authorization" not in mock_server.requests[0].headers


async def test_gzip_body(make_backend: Factory, mock_server: MockServerThread) -> None:
    result = await one(make_backend(compress_gzip=True), "zip me " * 200)
    assert isinstance(result, MinimaLlmResponse) and result.text.startswith("echo: zip me")
    [seen] = mock_server.requests
    assert seen.headers["content-encoding"] == "gzip"
    assert seen.wire_bytes < 200  # 1,400 bytes of prompt went over the wire compressed


async def test_retries_then_success(make_backend: Factory, mock_server: MockServerThread) -> None:
    result = await one(make_backend(), "#mock:fault=500,503,reset")
    assert isinstance(result, MinimaLlmResponse)
    assert [r.outcome for r in mock_server.requests] == ["500", "503", "reset", "ok"]


@pytest.mark.parametrize("status", [400, 401, 404, 422])
async def test_4xx_is_not_retried(
    make_backend: Factory, mock_server: MockServerThread, status: int
) -> None:
    result = await one(make_backend(), f"#mock:fault={status}")
    assert isinstance(result, MinimaLlmFailure)
    assert (result.status, result.attempts, len(result.attempt_timestamps)) == (status, 1, 1)
    assert mock_server.stats.requests_total == 1


# kind -> (error_type, status, retried)
FAULTS = {
    "reset": ("RemoteProtocolError", None, True),
    "malformed": ("MalformedResponse", 200, True),
    "cut": ("RemoteProtocolError", None, True),
    "nochoices": ("MalformedResponse", 200, True),
    "null": ("EmptyContent", 200, False),
    "500": ("HTTPError", 500, True),
}


@pytest.mark.parametrize("kind", sorted(FAULTS))
async def test_each_fault_over_the_wire(
    make_backend: Factory, mock_server: MockServerThread, kind: str
) -> None:
    error_types, status, retried = FAULTS[kind]
    result = await one(make_backend(max_attempts=2), f"#mock:fault={kind}*5")
    assert isinstance(result, MinimaLlmFailure)
    if kind == "reset":  # the RST may surface on read or as a protocol error
        assert result.error_type in ("RemoteProtocolError", "ConnectionError")
    else:
        assert result.error_type == error_types
    assert result.status == status
    assert result.attempts == (2 if retried else 1) == mock_server.stats.requests_total


async def test_refusals_do_not_spend_max_attempts_over_the_wire(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    # 503 is the server's refusal, a signal for flow control: bounded by MAX_WAIT_S,
    # not by MAX_ATTEMPTS
    result = await one(make_backend(max_attempts=2), "#mock:fault=503*5")
    assert isinstance(result, MinimaLlmResponse)
    assert mock_server.stats.requests_total == 6


async def test_connect_refused_is_a_retried_failure(make_backend: Factory) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once the socket closes
    result = await one(make_backend(base_url=f"http://127.0.0.1:{port}/v1", max_attempts=3), "x")
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.attempts, result.status) == ("ConnectError", 3, None)


async def test_timeout_is_408_and_closes_the_connection(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    start = trio.current_time()
    result = await one(make_backend(timeout_s=0.3, max_attempts=1), "#mock:fault=hang")
    elapsed = trio.current_time() - start
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.status, result.timeout_s) == ("TimeoutError", 408, 0.3)
    assert 0.3 <= elapsed < 2.0
    assert await trio.to_thread.run_sync(
        mock_server.wait_for, lambda s: s.open_connections == 0, 3.0
    )


async def test_retry_after_is_honoured(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    result = await one(make_backend(), "#mock:fault=429 #mock:retry_after=0.4")
    assert isinstance(result, MinimaLlmResponse)
    first, second = mock_server.requests
    assert second.received_at - first.received_at >= 0.4


async def test_many_concurrent_requests_each_get_their_own_answer(
    make_backend: Factory, mock_server: MockServerThread
) -> None:
    results: dict[int, MinimaLlmResult] = {}
    async with make_backend(max_outstanding=8) as backend:

        async def call(i: int) -> None:
            results[i] = await backend.generate(ask(f"item {i}", f"id-{i}"))

        async with trio.open_nursery() as nursery:
            for i in range(200):
                nursery.start_soon(call, i)
    assert all(
        r.text == f"echo: item {i}" and r.request_id == f"id-{i}" for i, r in results.items()
    )  # type: ignore[union-attr]
    assert mock_server.stats.max_in_flight <= 8
    assert mock_server.stats.connections_accepted <= 8
