"""Admission (Limiter · Cooldown · Pacer in one line) and Workers, in virtual time."""

from __future__ import annotations

import itertools
import math
import random

import pytest
import trio
import trio.testing

from fakes import FakeServer, FakeTransport, Script
from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse
from minimallm._attempts import AttemptError
from minimallm._backend import OpenAIMinimaLlm
from minimallm._config import MinimaLlmConfig
from minimallm._cooldown import CooldownState
from minimallm._errors import BackendClosedError
from minimallm._http import errors as http_errors
from minimallm._pacing import PacingSchedule
from minimallm._runtime import RuntimeOptions
from minimallm._transport import HttpReply
from minimallm.actors import Admission, Cooldown, Limiter, Overload, Pacer, Worker


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


def admission(n: int, rpm: int = 0) -> Admission:
    workers = [Worker(FakeTransport(FakeServer()), 60.0, lambda: 0.0) for _ in range(n)]
    state = CooldownState(floor_s=0.0, cap_s=30.0, halflife_s=60.0, initial_s=1.0)
    return Admission(Limiter(workers), Cooldown(state), Pacer(PacingSchedule(rpm)))


OVERLOAD = AttemptError("HTTPError", "HTTP 429", True, True, 429, None, 5.0)


async def test_fast_path_then_fifo_line(autojump_clock: trio.testing.MockClock) -> None:
    adm = admission(1)
    order: list[int] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(adm.run)
        first = adm.try_admit()
        assert first is not None and adm.try_admit() is None

        async def wait(i: int) -> None:
            worker = await adm.admit()
            order.append(i)
            await trio.sleep(1.0)
            adm.finish(worker, None)

        for i in range(4):
            nursery.start_soon(wait, i)
            await trio.testing.wait_all_tasks_blocked()
        assert adm.waiting == 4 and adm.try_admit() is None  # nobody jumps the line
        adm.finish(first, None)
        await trio.sleep(10.0)
        assert order == [0, 1, 2, 3] and adm.waiting == 0
        assert adm.limiter.statistics().in_flight == 0
        nursery.cancel_scope.cancel()


async def test_cooldown_holds_the_line_and_the_head_keeps_a_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    adm = admission(2)
    admitted_at: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(adm.run)
        worker = adm.try_admit()
        assert worker is not None
        worker.sent_at = 0.0
        adm.finish(worker, OVERLOAD)  # Retry-After 5 s: gate closed until t = 5
        assert adm.cooldown.deadline() == 5.0

        async def wait() -> None:
            w = await adm.admit()
            admitted_at.append(trio.current_time())
            adm.finish(w, None)

        nursery.start_soon(wait)
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        assert adm.limiter.statistics().in_flight == 1  # the head holds one Worker
        await trio.sleep(10.0)
        assert admitted_at == [5.0, 5.0]
        nursery.cancel_scope.cancel()


async def test_cancelled_waiter_leaves_the_line_and_returns_its_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    adm = admission(1)
    adm.cooldown.report(Overload(0.0, 3.0))  # gate closed until t = 3
    async with trio.open_nursery() as nursery:
        await nursery.start(adm.run)
        got: list[float] = []

        async def wait() -> None:
            w = await adm.admit()
            got.append(trio.current_time())
            adm.finish(w, None)

        with trio.move_on_after(1.0):
            await adm.admit()  # head of the line, holding the only Worker
        assert adm.waiting == 0 and adm.limiter.free == 1
        nursery.start_soon(wait)
        await trio.sleep(5.0)
        assert got == [3.0]
        nursery.cancel_scope.cancel()


async def test_close_wakes_every_waiter_with_backend_closed() -> None:
    adm = admission(1)
    assert adm.try_admit() is not None
    errors: list[BaseException] = []

    async def wait() -> None:
        try:
            await adm.admit()
        except BackendClosedError as exc:
            errors.append(exc)

    async with trio.open_nursery() as nursery:
        for _ in range(3):
            nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        adm.close()
    assert len(errors) == 3 and adm.try_admit() is None
    with pytest.raises(BackendClosedError):
        await adm.admit()


async def test_pacing_is_exact_at_times_off_the_grid(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """rpm=60: a caller arriving a hair before the next slot waits for it (the slot is
    ``now`` rounded up to a 2**-20 s grid, the spacing is still >= 1 s)."""
    adm = admission(4, rpm=60)
    sent: list[float] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(adm.run)
        for arrival in (0.3, 1.3 - 1e-7, 2.3 - 1e-7):
            await trio.sleep_until(arrival)
            worker = adm.try_admit() or await adm.admit()
            sent.append(trio.current_time())
            adm.finish(worker, None)
        nursery.cancel_scope.cancel()
    assert sent[0] == 0.3
    assert all(b - a >= 1.0 for a, b in itertools.pairwise(sent))
    assert adm.pacer.sent == 3 and not math.isinf(adm.pacer.not_before)


def recording_backend(server: FakeServer, used: list[int], **cfg: object) -> OpenAIMinimaLlm:
    def factory(url: str) -> FakeTransport:
        index = len(server.transports)
        transport = server.transport(url)
        post = transport.post

        async def recorded(headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> object:
            used.append(index)
            return await post(headers, body)

        transport.post = recorded  # type: ignore[method-assign]
        return transport

    base: dict[str, object] = {"base_url": "http://fake.invalid", "model": "m", "rpm": 0}
    base.update(cfg)
    return OpenAIMinimaLlm(
        MinimaLlmConfig(**base),  # type: ignore[arg-type]
        options=RuntimeOptions(factory, random.Random(0)),  # type: ignore[arg-type]
    )


async def test_idle_workers_are_lent_last_in_first_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    used: list[int] = []
    server = FakeServer(lambda c, n: Script(latency=0.5))
    async with recording_backend(server, used, max_outstanding=8) as backend:
        for i in range(5):
            result = await backend.generate(
                MinimaLlmRequest(f"r{i}", [{"role": "user", "content": "x"}])
            )
            assert isinstance(result, MinimaLlmResponse)
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(
                    backend.generate, MinimaLlmRequest(f"c{i}", [{"role": "user", "content": "y"}])
                )
        result = await backend.generate(MinimaLlmRequest("z", [{"role": "user", "content": "z"}]))
    assert used[:5] == [0] * 5  # one warm connection serves a sequential caller
    assert sorted(used[5:8]) == [0, 1, 2] and used[8] in (0, 1, 2)


async def test_waiting_in_line_learns_the_backend_closed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=50.0))
    used: list[int] = []
    backend = recording_backend(server, used, max_outstanding=1)
    outcomes: list[str] = []

    async def call(i: int) -> None:
        try:
            await backend.generate(MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"{i}"}]))
            outcomes.append("answered")
        except BackendClosedError:
            outcomes.append("closed")

    async with trio.open_nursery() as nursery:
        for i in range(3):
            nursery.start_soon(call, i)
        await trio.sleep(1.0)
        await backend.aclose()
    assert outcomes == ["closed"] * 3 and len(server.sent) == 1
    assert all(t.closed for t in server.transports)


class InterruptibleFake(FakeTransport):
    """A fake transport that, like the HTTP client, can be interrupted from another
    task (so its Worker is watched by the Watchdog instead of a cancel scope)."""

    def __init__(self, server: FakeServer) -> None:
        super().__init__(server)
        self._scope: trio.CancelScope | None = None
        self.interrupts = 0

    async def post(self, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> HttpReply:
        with trio.CancelScope() as self._scope:
            return await self.server.handle(body)
        raise http_errors.ReadError("interrupted")

    def interrupt(self) -> None:
        self.interrupts += 1
        if self._scope is not None:
            self._scope.cancel()


def watched_backend(server: FakeServer, **cfg: object) -> OpenAIMinimaLlm:
    transports: list[InterruptibleFake] = []

    def factory(url: str) -> InterruptibleFake:
        transports.append(InterruptibleFake(server))
        server.transports.append(transports[-1])
        return transports[-1]

    base: dict[str, object] = {"base_url": "http://fake.invalid", "model": "m", "rpm": 0}
    base.update(cfg)
    return OpenAIMinimaLlm(
        MinimaLlmConfig(**base),  # type: ignore[arg-type]
        options=RuntimeOptions(factory, random.Random(0)),  # type: ignore[arg-type]
    )


async def test_watchdog_ends_each_attempt_exactly_at_its_deadline(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=100.0 if c != "quick" else 0.5))
    results: dict[str, object] = {}
    async with watched_backend(server, timeout_s=2.0, max_attempts=1) as backend:

        async def call(content: str, at: float) -> None:
            await trio.sleep(at)
            req = MinimaLlmRequest(content, [{"role": "user", "content": content}])
            results[content] = await backend.generate(req)

        async with trio.open_nursery() as nursery:
            for content, at in (("a", 0.0), ("quick", 0.2), ("b", 0.5), ("c", 1.0)):
                nursery.start_soon(call, content, at)
    ends = {s.content: (s.start, s.end, s.cancelled) for s in server.sent}
    assert ends == {
        "a": (0.0, 2.0, True),
        "quick": (0.2, 0.7, False),
        "b": (0.5, 2.5, True),
        "c": (1.0, 3.0, True),
    }
    for content in "abc":
        failure = results[content]
        assert isinstance(failure, MinimaLlmFailure)
        assert (failure.error_type, failure.status) == ("TimeoutError", 408)
    assert isinstance(results["quick"], MinimaLlmResponse)
    assert sum(t.interrupts for t in server.transports) == 3  # type: ignore[attr-defined]


async def test_watched_attempt_learns_the_backend_closed_and_caller_cancel_still_works(
    autojump_clock: trio.testing.MockClock,
) -> None:
    server = FakeServer(lambda c, n: Script(latency=50.0))
    backend = watched_backend(server, timeout_s=60.0)
    outcome: list[BaseException] = []

    async def call() -> None:
        try:
            await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "x"}]))
        except BackendClosedError as exc:
            outcome.append(exc)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(call)
        await trio.sleep(1.0)
        await backend.aclose()
    assert len(outcome) == 1 and server.sent[0].end == 1.0 and server.in_flight == 0

    async with watched_backend(server, timeout_s=60.0) as backend:
        with trio.move_on_after(3.0):
            await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "y"}]))
        assert server.sent[1].cancelled and server.sent[1].end == 4.0
        assert server.in_flight == 0


async def test_a_cancelled_caller_takes_no_worker() -> None:
    adm = admission(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await adm.admit()
    assert adm.limiter.free == 1 and adm.pacer.sent == 0
