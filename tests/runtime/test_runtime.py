"""The request path on trio with a scripted transport, in virtual time: exact times."""

from __future__ import annotations

import random

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script
from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse
from minimallm._backend import OpenAIMinimaLlm
from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import BackendClosedError
from minimallm._http import errors as http_errors
from minimallm._runtime.serve import RuntimeOptions


def make_backend(server: FakeServer, **overrides: object) -> OpenAIMinimaLlm:
    settings: dict[str, object] = {
        "base_url": "http://fake.invalid/v1",
        "model": "m",
        "rpm": 0,
        "jitter": 0.0,
        "base_backoff_s": 1.0,
        "max_backoff_s": 8.0,
    }
    settings.update(overrides)
    cfg = MinimaLlmConfig(**settings)  # type: ignore[arg-type]
    return OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport, random.Random(0)))


def req(content: str, rid: str = "r") -> MinimaLlmRequest:
    return MinimaLlmRequest(rid, [{"role": "user", "content": content}])


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


async def test_success_returns_text_and_usage(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer(lambda c, n: Script(latency=0.25))
    async with make_backend(server) as backend:
        result = await backend.generate(req("hi", "a"))
    assert isinstance(result, MinimaLlmResponse)
    assert (result.request_id, result.text, result.cached) == ("a", "echo: hi", False)
    assert (result.prompt_tokens, result.completion_tokens, result.total_tokens) == (3, 2, 5)
    assert trio.current_time() == pytest.approx(0.25)


async def test_retries_with_exact_backoff_then_succeeds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    statuses = [500, 503, 200]
    server = FakeServer(lambda c, n: Script(latency=0.5, status=statuses[n]))
    async with make_backend(server) as backend:
        result = await backend.generate(req("x"))
    assert isinstance(result, MinimaLlmResponse)
    # sends at 0; 0.5 + 1.0 (backoff 1); 2.0 + 0.5 + 1.0: a refusal (503) waits one base
    # backoff, no doubling: how fast everyone sends after refusals is flow control's
    starts = [s.start for s in server.sent]
    assert starts[0] == 0.0
    assert starts[1] == pytest.approx(1.5)
    assert starts[2] == pytest.approx(starts[1] + 0.5 + 1.0)


async def test_non_retryable_4xx_is_one_attempt(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer(lambda c, n: Script(status=400, body=b'{"error": "bad"}'))
    async with make_backend(server) as backend:
        result = await backend.generate(req("x", "b"))
    assert isinstance(result, MinimaLlmFailure)
    assert (result.attempts, result.status, result.error_type) == (1, 400, "HTTPError")
    assert result.body_snippet == '{"error": "bad"}'
    assert len(server.sent) == 1


async def test_max_attempts_bounds_retries_and_records_send_times(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=0.1, status=500))
    async with make_backend(server, max_attempts=3) as backend:
        result = await backend.generate(req("x"))
    assert isinstance(result, MinimaLlmFailure)
    assert result.attempts == 3
    assert result.attempt_timestamps == tuple(s.start for s in server.sent)
    assert result.format_attempts() == "[+0.0s, +1.1s, +3.2s]"


async def test_timeout_bounds_the_whole_attempt(autojump_clock: trio.testing.MockClock) -> None:
    server = FakeServer(lambda c, n: Script(latency=100.0))
    async with make_backend(server, timeout_s=2.0, max_attempts=2) as backend:
        result = await backend.generate(req("x"))
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.status, result.timeout_s) == ("TimeoutError", 408, 2.0)
    assert [s.cancelled for s in server.sent] == [True, True]
    assert [s.end for s in server.sent] == [2.0, 5.0]  # 2 s attempt, 1 s backoff, 2 s attempt


async def test_transport_error_is_retried(autojump_clock: trio.testing.MockClock) -> None:
    def script(content: str, n: int) -> Script:
        return Script(raises=http_errors.ReadError("reset")) if n == 0 else Script()

    server = FakeServer(script)
    async with make_backend(server) as backend:
        result = await backend.generate(req("x"))
    assert isinstance(result, MinimaLlmResponse)
    assert len(server.sent) == 2


async def test_retry_after_is_honoured_and_capped(autojump_clock: trio.testing.MockClock) -> None:
    def script(content: str, n: int) -> Script:
        if n == 0:
            return Script(status=429, headers={"retry-after": "7"})
        if n == 1:
            return Script(status=429, headers={"retry-after": "3600"})
        return Script()

    server = FakeServer(script)
    async with make_backend(server, cooldown_cap_s=10.0, max_wait_s=7200.0) as backend:
        result = await backend.generate(req("x"))
    assert isinstance(result, MinimaLlmResponse)
    starts = [s.start for s in server.sent]
    assert starts[1] == pytest.approx(7.0)
    assert starts[2] == pytest.approx(17.0)  # 3600 s capped at cooldown_cap_s = 10


async def test_cancelling_the_caller_cancels_the_attempt(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=50.0))
    async with make_backend(server) as backend:
        with trio.move_on_after(1.0):
            await backend.generate(req("x"))
        await trio.testing.wait_all_tasks_blocked()
        assert server.sent[0].cancelled and server.sent[0].end == 1.0
        assert server.in_flight == 0


async def test_aclose_closes_every_connection_and_backend_restarts(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer()
    backend = make_backend(server, max_outstanding=4)
    assert isinstance(await backend.generate(req("x")), MinimaLlmResponse)
    await backend.aclose()
    assert len(server.transports) == 4 and all(t.closed for t in server.transports)
    assert isinstance(await backend.generate(req("y")), MinimaLlmResponse)
    await backend.aclose()


async def test_waiting_callers_learn_the_backend_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=50.0))
    backend = make_backend(server)
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await backend.generate(req("x"))
        except BackendClosedError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.sleep(1.0)
        await backend.aclose()
    assert len(outcome) == 1
