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
from minimallm._config.settings import MinimaLlmConfig
from minimallm._http import errors as http_errors
from minimallm._runtime.serve import RuntimeOptions

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


OUTCOMES = ["ok", "429", "503", "500", "refused", "hang"]


def outcome_script(kind: str, latency: float, retry_after: float) -> Script:
    if kind == "ok":
        return Script(latency=latency)
    if kind == "429":
        return Script(latency=latency, status=429, headers={"retry-after": repr(retry_after)})
    if kind in ("503", "500"):
        return Script(latency=latency, status=int(kind))
    if kind == "refused":
        return Script(latency=0.0, raises=http_errors.ConnectError("refused"))
    return Script(latency=1000.0)  # hang: ended by TIMEOUT_S


@settings(max_examples=40, deadline=None)
@given(
    max_outstanding=st.integers(1, 12),
    rpm=st.one_of(st.just(0), st.integers(30, 6000)),
    n=st.integers(1, 60),
    weights=st.lists(st.integers(0, 5), min_size=len(OUTCOMES), max_size=len(OUTCOMES)),
    seed=st.integers(0, 2**32),
    retry_after=st.floats(0.0, 5.0),
)
def test_caps_hold_under_any_mix_of_outcomes(
    max_outstanding: int, rpm: int, n: int, weights: list[int], seed: int, retry_after: float
) -> None:
    """MAX_OUTSTANDING and RPM are never exceeded, whatever the server answers."""
    rng = random.Random(seed)
    if not any(weights):
        weights = [1, *weights[1:]]
    kinds = {}

    def script(content: str, attempt: int) -> Script:
        key = (content, attempt)
        if key not in kinds:
            kinds[key] = rng.choices(OUTCOMES, weights)[0]
        return outcome_script(kinds[key], rng.choice([0.0, 0.05, 0.5]), retry_after)

    server = FakeServer(script)
    results: list[object] = []

    async def main() -> None:
        backend = backend_for(
            server,
            max_outstanding=max_outstanding,
            rpm=rpm,
            timeout_s=2.0,
            max_attempts=4,
            base_backoff_s=0.1,
            max_backoff_s=1.0,
        )
        results.extend(await fire(backend, n, [rng.uniform(0, 3) for _ in range(n)]))

    run_virtual(main)
    assert server.max_in_flight <= max_outstanding
    assert len(results) == n and all(r is not None for r in results)
    if rpm:
        sends = sorted(s.start for s in server.sent)
        for a, b in itertools.pairwise(sends):
            assert b - a >= 60.0 / rpm * (1 - EPS) - EPS
        for i, start in enumerate(sends):
            assert len([t for t in sends[i:] if t < start + 60.0 - EPS]) <= rpm


@settings(max_examples=30, deadline=None)
@given(p=st.floats(0.0, 0.05), seed=st.integers(0, 2**32), retry_after=st.floats(0.5, 5.0))
def test_sporadic_overloads_never_pause_the_whole_client(
    p: float, seed: int, retry_after: float
) -> None:
    """With at most 5 % of answers 429/503 (with Retry-After), sends never stop while
    fresh work is waiting: only the requests that got the overload wait."""
    rng = random.Random(seed)
    outcomes: dict[tuple[str, int], str] = {}

    def script(content: str, attempt: int) -> Script:
        key = (content, attempt)
        if key not in outcomes:
            outcomes[key] = rng.choice(["429", "503"]) if rng.random() < p else "ok"
        return outcome_script(outcomes[key], 0.1, retry_after)

    server = FakeServer(script)
    n = 300

    async def main() -> None:
        backend = backend_for(server, max_outstanding=8, rpm=0, base_backoff_s=0.5)
        await fire(backend, n, [0.0] * n)

    run_virtual(main)
    first_sends = sorted(s.start for s in server.sent if (s.content, 0) in outcomes)
    firsts = {}
    for s in server.sent:
        firsts.setdefault(s.content, s.start)
    last_fresh = max(firsts.values())
    sends = sorted(s.start for s in server.sent if s.start <= last_fresh)
    assert first_sends
    for a, b in itertools.pairwise(sends):
        assert b - a <= 0.1 + EPS  # never a pause while fresh work waits
