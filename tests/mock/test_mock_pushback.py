"""The mock server pushing back over real loopback sockets: rate limit, capacity modes,
503 faults, outages and storms.

Most tests run on a frozen trio clock (``mock_clock``: time moves only when the test
jumps it), so the server's timeline, buckets and latencies are exact; quiescence is
``wait_all_tasks_blocked`` (on loopback the kernel delivers bytes, FINs and RSTs
within the sending call, so nothing is left in flight once every task is blocked).
"""

from __future__ import annotations

import functools
import json
import ssl
from typing import Any

import httpx
import pytest
import trio
import trio.testing

from minimallm.mock import (
    MockServer,
    MockServerConfig,
    MockServerProcess,
    MockServerThread,
    Outage,
    Storm,
    serve_mock,
)


@functools.cache
def _tls() -> ssl.SSLContext:
    return ssl.create_default_context()


def aclient(server: MockServer) -> httpx.AsyncClient:
    # No client timeout: the tests jump the clock past httpx's default 5 s.
    return httpx.AsyncClient(base_url=server.base_url, verify=_tls(), timeout=None)


async def start(nursery: trio.Nursery, **kw: Any) -> MockServer:
    server: MockServer = await nursery.start(serve_mock, MockServerConfig(**kw))
    return server


def chat(content: str) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}]}


async def post(client: httpx.AsyncClient, content: str = "q") -> httpx.Response:
    return await client.post("/chat/completions", json=chat(content))


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


async def connect_refused(server: MockServer) -> bool:
    try:
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    except OSError:
        return True
    await stream.aclose()
    return False


# --- rate limit ---------------------------------------------------------------------


async def test_rate_limit_answers_429_with_headers_then_lets_through(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, rate_limit_per_s=10.0, burst=2)
    async with aclient(server) as client:
        answers = [await post(client, f"r{i}") for i in range(3)]
        assert [r.status_code for r in answers] == [200, 200, 429]
        assert [r.headers["x-ratelimit-remaining-requests"] for r in answers] == ["1", "0", "0"]
        assert [r.headers["x-ratelimit-reset-requests"] for r in answers] == [
            "100ms", "200ms", "200ms",
        ]  # fmt: skip
        assert {r.headers["x-ratelimit-limit-requests"] for r in answers} == {"2"}
        refused = answers[2]
        assert (refused.headers["retry-after"], refused.headers["retry-after-ms"]) == ("1", "100")
        assert "retry-after" not in answers[0].headers
        mock_clock.jump(0.1)  # exactly the advertised wait
        assert (await post(client, "r3")).status_code == 200
    assert server.stats.outcomes == {"ok": 3, "ratelimit": 1}


async def test_silent_rate_limit_sends_no_headers(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, rate_limit_per_s=1.0, burst=1, rate_headers=False)
    async with aclient(server) as client:
        ok, refused = await post(client), await post(client)
    assert (ok.status_code, refused.status_code) == (200, 429)
    for r in (ok, refused):
        assert not [h for h in r.headers if h.startswith(("x-ratelimit", "retry-after"))]


# --- capacity -------------------------------------------------------------------------


async def test_capacity_503_mode_refuses_at_once(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, capacity=1, capacity_mode="503", latency_s=1.0)
    async with aclient(server) as client, trio.open_nursery() as slow:
        slow.start_soon(post, client, "slow")
        await settle()
        refused = await post(client, "second")
        assert (refused.status_code, refused.headers["retry-after"]) == (503, "1")
        slow.cancel_scope.cancel()
    assert server.stats.outcomes == {"ok": 1, "capacity": 1}


async def test_queue_mode_waits_for_a_slot_in_order(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, capacity=1, capacity_mode="queue", latency_s=1.0)
    done: dict[str, float] = {}

    async def timed(client: httpx.AsyncClient, name: str) -> None:
        r = await post(client, name)
        assert r.json()["choices"][0]["message"]["content"] == f"echo: {name}"
        done[name] = trio.current_time()

    t0 = trio.current_time()
    async with aclient(server) as client, trio.open_nursery() as clients:
        clients.start_soon(timed, client, "a")
        await settle()
        clients.start_soon(timed, client, "b")
        await settle()
        clients.start_soon(timed, client, "c")
        await settle()
        stats = server.stats
        assert (stats.in_flight, stats.queued, stats.max_queued) == (3, 2, 2)
        for _ in range(3):
            mock_clock.jump(1.0)
            await settle()
    # One at a time, each latency counted from when it got the slot.
    assert done == {"a": t0 + 1.0, "b": t0 + 2.0, "c": t0 + 3.0}
    assert server.stats.queued == 0


async def test_a_client_that_leaves_the_queue_frees_its_place(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, capacity=1, capacity_mode="queue", latency_s=1.0)
    async with aclient(server) as client, trio.open_nursery() as clients:
        clients.start_soon(post, client, "holder")
        await settle()
        with trio.CancelScope() as leaver:
            clients.start_soon(post, client, "leaver")
            await settle()
            assert server.stats.queued == 1
            leaver.cancel()
        clients.cancel_scope.cancel()
    await settle()
    assert (server.stats.queued, server.stats.in_flight) == (0, 0)


# --- random faults ----------------------------------------------------------------------


@pytest.mark.parametrize(("retry_after", "header"), [(None, None), (2.0, "2")])
async def test_random_503_carries_retry_after_only_when_configured(
    nursery: trio.Nursery, retry_after: float | None, header: str | None
) -> None:
    server = await start(nursery, fault_rates={"503": 1.0}, fault_retry_after_s=retry_after)
    async with aclient(server) as client:
        r = await post(client)
    assert (r.status_code, r.headers.get("retry-after")) == (503, header)


# --- outages and storms -------------------------------------------------------------------


async def test_refuse_outage_resets_connections_refuses_then_reopens_same_port(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, latency_s=30.0, phases=(Outage(5.0, 10.0, "refuse"),))
    port = server.port
    async with aclient(server) as client, trio.open_nursery() as waiting:
        failures: list[BaseException] = []

        async def in_flight() -> None:
            try:
                await post(client, "long")
            except httpx.TransportError as exc:
                failures.append(exc)

        waiting.start_soon(in_flight)  # the timeline starts here
        await settle()
        assert server.stats.open_connections == 1
        mock_clock.jump(4.9)
        await settle()
        assert not await connect_refused(server)
        mock_clock.jump(0.1)
        await settle()
        assert await connect_refused(server)
        assert [type(e) for e in failures] == [httpx.ReadError]  # the connection was reset
        assert server.stats.open_connections == 0
        mock_clock.jump(10.0)
        await settle()
    assert server.port == port
    async with aclient(server) as client, trio.open_nursery() as later:
        later.start_soon(post, client, "back")
        await settle()
        assert server.stats.in_flight == 1  # served again, on the same port
        later.cancel_scope.cancel()
    assert server.stats.phases["outage"] == {"connections_reset": 1}


async def test_blackhole_outage_accepts_and_never_answers(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, latency_s=1.0, phases=(Outage(0.5, 2.0, "blackhole"),))
    answered: list[int] = []

    async def send(client: httpx.AsyncClient, content: str) -> None:
        answered.append((await post(client, content)).status_code)

    async with aclient(server) as client, trio.open_nursery() as clients:
        clients.start_soon(send, client, "before")  # its answer falls into the hole
        await settle()
        mock_clock.jump(0.5)
        clients.start_soon(send, client, "during")
        await settle()
        mock_clock.jump(1.0)  # "before" is due now, inside the outage
        await settle()
        mock_clock.jump(5.0)  # the outage is over; nothing comes back
        await settle()
        assert answered == []
        stats = server.stats
        assert (stats.in_flight, stats.open_connections) == (2, 2)
        clients.cancel_scope.cancel()
    assert server.stats.phases == {"normal": {"ok": 1}, "outage": {"blackhole": 1}}
    async with aclient(server) as client, trio.open_nursery() as clients:
        clients.start_soon(send, client, "after")
        await settle()
        mock_clock.jump(1.0)
    assert answered == [200]


async def test_storm_answers_every_request_then_ends(
    nursery: trio.Nursery, mock_clock: trio.testing.MockClock
) -> None:
    server = await start(nursery, phases=(Storm(1.0, 2.0, 429, 1.5),))
    async with aclient(server) as client:
        codes = [(await post(client)).status_code]
        mock_clock.jump(1.0)
        stormed = await post(client)
        codes.append(stormed.status_code)
        mock_clock.jump(1.999)
        codes.append((await post(client)).status_code)
        mock_clock.jump(0.001)
        codes.append((await post(client)).status_code)
    assert codes == [200, 429, 429, 200]
    assert stormed.headers["retry-after"] == "1.5"
    assert server.stats.phases == {"normal": {"ok": 2}, "storm": {"storm": 2}}


# --- runners -----------------------------------------------------------------------------


def test_thread_runner_exposes_arrivals_and_phase_stats() -> None:
    config = MockServerConfig(phases=(Storm(1000.0, 1.0),), max_arrivals=10)
    with MockServerThread(config) as mock, httpx.Client(verify=_tls()) as client:
        for i in range(3):
            client.post(mock.base_url + "/chat/completions", json=chat(f"t{i}"))
        arrivals = mock.arrivals()
        assert [kind for _, kind in arrivals] == ["ok"] * 3
        started = mock.stats.timeline_started_at
        assert started is not None and started <= arrivals[0][0]
        assert mock.stats.phases == {"normal": {"ok": 3}}


def test_process_runner_carries_new_settings_and_reports_arrivals() -> None:
    config = MockServerConfig(
        rate_limit_per_s=1.0, burst=2, max_arrivals=100, phases=(Storm(3600.0, 1.0),)
    )
    with MockServerProcess(config) as mock, httpx.Client(verify=_tls()) as client:
        codes = [
            client.post(mock.base_url + "/chat/completions", json=chat(f"p{i}")).status_code
            for i in range(3)
        ]
        arrivals = mock.arrivals()
        stats = mock.stats
    assert codes == [200, 200, 429]
    assert [kind for _, kind in arrivals] == ["ok", "ok", "ratelimit"]
    assert stats.phases == {"normal": {"ok": 2, "ratelimit": 1}}
    assert json.loads(json.dumps(stats.as_dict()))["phases"] == stats.phases
