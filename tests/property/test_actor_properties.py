"""Scheduling invariants of the actors, in virtual time (MockClock), for random loads."""

from __future__ import annotations

import itertools
import random

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import FakeServer, Script
from minimallm import MinimaLlmRequest, MinimaLlmResponse
from minimallm._backend import OpenAIMinimaLlm
from minimallm._config import MinimaLlmConfig
from minimallm._runtime import RuntimeOptions

EPS = 1e-9


def run_virtual(main: object) -> None:
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))  # type: ignore[arg-type]


def backend_for(server: FakeServer, **cfg: object) -> OpenAIMinimaLlm:
    base: dict[str, object] = {"base_url": "http://fake.invalid", "model": "m"}
    base.update(cfg)
    return OpenAIMinimaLlm(
        MinimaLlmConfig(**base),  # type: ignore[arg-type]
        options=RuntimeOptions(server.transport, random.Random(1)),
    )


async def fire(backend: OpenAIMinimaLlm, n: int, arrivals: list[float]) -> list[object]:
    results: list[object] = [None] * n

    async def one(i: int) -> None:
        await trio.sleep(arrivals[i])
        results[i] = await backend.generate(
            MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"p{i}"}])
        )

    async with trio.open_nursery() as nursery:
        for i in range(n):
            nursery.start_soon(one, i)
    await backend.aclose()
    return results


@settings(max_examples=40, deadline=None)
@given(
    max_outstanding=st.integers(1, 8),
    latencies=st.lists(st.floats(0.0, 5.0), min_size=1, max_size=40),
    fail_every=st.integers(0, 4),
    data=st.data(),
)
def test_never_more_than_max_outstanding_in_flight(
    max_outstanding: int, latencies: list[float], fail_every: int, data: st.DataObject
) -> None:
    n = len(latencies)
    arrivals = data.draw(st.lists(st.floats(0.0, 3.0), min_size=n, max_size=n))

    def script(content: str, attempt: int) -> Script:
        i = int(content[1:])
        failing = fail_every and i % fail_every == 0 and attempt == 0
        return Script(latency=latencies[i], status=500 if failing else 200)

    server = FakeServer(script)
    results: list[object] = []

    async def main() -> None:
        backend = backend_for(server, max_outstanding=max_outstanding, rpm=0, base_backoff_s=0.1)
        results.extend(await fire(backend, n, arrivals))

    run_virtual(main)
    assert server.max_in_flight <= max_outstanding
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert [r.text for r in results] == [f"echo: p{i}" for i in range(n)]  # type: ignore[union-attr]


@settings(max_examples=40, deadline=None)
@given(
    rpm=st.integers(1, 20_000),
    n=st.integers(1, 60),
    max_outstanding=st.integers(1, 16),
    latency=st.floats(0.0, 2.0),
    data=st.data(),
)
def test_sends_keep_the_paced_spacing_on_the_wire(
    rpm: int, n: int, max_outstanding: int, latency: float, data: st.DataObject
) -> None:
    arrivals = data.draw(st.lists(st.floats(0.0, 30.0), min_size=n, max_size=n))
    server = FakeServer(lambda c, a: Script(latency=latency))

    async def main() -> None:
        backend = backend_for(server, max_outstanding=max_outstanding, rpm=rpm)
        await fire(backend, n, arrivals)

    run_virtual(main)
    sends = sorted(s.start for s in server.sent)
    interval = 60.0 / rpm
    for a, b in itertools.pairwise(sends):
        assert b - a >= interval * (1 - EPS) - EPS
    for i, start in enumerate(sends):
        in_window = [s for s in sends[i:] if s < start + 60.0 - EPS]
        assert len(in_window) <= rpm


@settings(max_examples=30, deadline=None)
@given(
    retry_after=st.floats(0.0, 100.0),
    cap=st.floats(0.5, 30.0),
    others=st.integers(1, 6),
)
def test_no_send_during_a_cooldown_and_retry_after_is_capped(
    retry_after: float, cap: float, others: int
) -> None:
    """One 429 with Retry-After closes the gate for everyone until the deadline, which
    is min(retry_after, cap) at least, and the retry itself waits at most ``cap``."""

    def script(content: str, attempt: int) -> Script:
        if content == "p0" and attempt == 0:
            return Script(latency=1.0, status=429, headers={"retry-after": repr(retry_after)})
        return Script(latency=0.5)

    server = FakeServer(script)
    arrivals = [0.0] + [1.5] * others

    async def main() -> None:
        backend = backend_for(
            server, max_outstanding=8, rpm=0, cooldown_cap_s=cap, cooldown_floor_s=0.0
        )
        await fire(backend, others + 1, arrivals)

    run_virtual(main)
    blocked_until = 1.0 + min(retry_after, cap)
    later = [s.start for s in server.sent[1:]]
    assert all(t >= blocked_until - EPS for t in later)
    retry = [s.start for s in server.sent if s.content == "p0"][1]
    assert retry <= 1.0 + cap + EPS
