"""minimallm.testing: a user's own tests, without a server, through the whole backend."""

from __future__ import annotations

import asyncio

import pytest
import trio
import trio.testing

from minimallm import (
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._config.settings import BatchConfig
from minimallm.testing import MockRequest, MockResponse, MockTransport

CFG = MinimaLlmConfig(
    base_url="http://test/v1",
    model="m",
    api_key="sk-secret-for-the-test",
    rpm=0,
    base_backoff_s=0.01,
    batch=BatchConfig(heartbeat_s=0),
)


def req(i: int, text: str = "hello") -> MinimaLlmRequest:
    return MinimaLlmRequest(f"q{i}", [{"role": "user", "content": f"{text} {i}"}])


def upper(request: MockRequest) -> dict[str, object]:
    prompt = request.json["messages"][-1]["content"]
    return {"choices": [{"message": {"role": "assistant", "content": prompt.upper()}}]}


async def test_a_handler_answers_generate_and_batches_from_trio() -> None:
    transport = MockTransport(upper)
    async with OpenAIMinimaLlm(CFG, transport=transport) as backend:
        one = await backend.generate(req(0))
        many = await backend.run_batched([req(i) for i in range(50)])
    assert isinstance(one, MinimaLlmResponse) and one.text == "HELLO 0"
    assert [r.text for r in many if isinstance(r, MinimaLlmResponse)] == [
        f"HELLO {i}" for i in range(50)
    ]
    assert transport.requests == 51


def test_a_handler_answers_asyncio_callers() -> None:
    async def main() -> list[object]:
        async with OpenAIMinimaLlm(CFG, transport=MockTransport(upper)) as backend:
            return await backend.run_batched([req(i) for i in range(5)])

    assert [getattr(r, "text", None) for r in asyncio.run(main())] == [
        f"HELLO {i}" for i in range(5)
    ]


async def test_the_handler_sees_the_request_but_never_the_key() -> None:
    seen: list[MockRequest] = []

    def record(request: MockRequest) -> dict[str, object]:
        seen.append(request)
        return upper(request)

    async with OpenAIMinimaLlm(CFG, transport=MockTransport(record)) as backend:
        await backend.generate(
            MinimaLlmRequest("a", [{"role": "user", "content": "x"}], temperature=0.5)
        )
    [request] = seen
    assert request.url == "http://test/v1/chat/completions"
    assert request.json == {
        "model": "m",
        "messages": [{"role": "user", "content": "x"}],
        "temperature": 0.5,
    }
    assert request.headers["authorization"] == "Bearer <redacted>"
    assert "sk-secret" not in repr(request)


async def test_statuses_retries_and_broken_connections_behave_as_against_a_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: dict[str, int] = {}

    async def flaky(request: MockRequest) -> dict[str, object] | MockResponse:
        prompt = request.json["messages"][-1]["content"]
        n = calls[prompt] = calls.get(prompt, 0) + 1
        await trio.sleep(0.1)  # latency, in virtual time
        if prompt.startswith("bad"):
            return MockResponse(400, json={"error": {"message": "no such thing"}})
        if n == 1 and prompt.startswith("busy"):
            return MockResponse(503, headers={"Retry-After": "1"})
        if n == 1 and prompt.startswith("reset"):
            raise ConnectionResetError("peer reset")
        return upper(request)

    async with OpenAIMinimaLlm(CFG, transport=MockTransport(flaky)) as backend:
        bad, busy, reset = await backend.run_batched(
            [req(0, "bad"), req(1, "busy"), req(2, "reset")]
        )
    assert isinstance(bad, MinimaLlmFailure) and bad.message == "HTTP 400: no such thing"
    assert bad.attempts == 1
    assert isinstance(busy, MinimaLlmResponse) and busy.text == "BUSY 1"
    assert isinstance(reset, MinimaLlmResponse) and reset.text == "RESET 2"
    assert calls == {"bad 0": 1, "busy 1": 2, "reset 2": 2}


async def test_a_handler_returning_something_else_is_a_clear_error() -> None:
    async with OpenAIMinimaLlm(CFG, transport=MockTransport(lambda r: "text")) as backend:  # type: ignore[arg-type,return-value]
        with pytest.raises(Exception, match=r"returns a dict .* or a MockResponse, not str"):
            await backend.generate(req(0))


def test_a_transport_that_is_not_callable_is_refused() -> None:
    with pytest.raises(TypeError, match="MockTransport needs a function"):
        MockTransport("not a function")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"transport= takes a minimallm\.testing\.MockTransport"):
        OpenAIMinimaLlm(CFG, transport=42)  # type: ignore[arg-type]
