"""The mock OpenAI server over real loopback sockets (httpx and raw trio streams)."""

from __future__ import annotations

import functools
import gzip
import json
import random
import ssl
import threading
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import trio
from hypothesis import example, given, settings
from hypothesis import strategies as st

from minimallm import ConfigError
from minimallm._http.server import HttpError, RequestParser
from minimallm.mock import (
    DirectiveError,
    MockServer,
    MockServerConfig,
    MockServerProcess,
    MockServerThread,
    parse_directives,
    serve_mock,
)
from minimallm.mock.cli import build_parser, config_from_args, config_to_argv
from minimallm.mock.faults import FaultRoller, FaultSequences

# --- helpers ----------------------------------------------------------------------


@functools.cache
def _tls() -> ssl.SSLContext:
    # httpx builds a fresh SSLContext per client otherwise (0.1-0.6 s of CPU each).
    return ssl.create_default_context()


def aclient(base_url: str, **kw: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=base_url, verify=_tls(), **kw)


def sclient(base_url: str = "") -> httpx.Client:
    return httpx.Client(base_url=base_url, verify=_tls())


async def start(nursery: trio.Nursery, **kw: Any) -> MockServer:
    server: MockServer = await nursery.start(serve_mock, MockServerConfig(**kw))
    return server


def chat(content: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": content}], **extra}


async def post(client: httpx.AsyncClient, content: str, **kw: Any) -> httpx.Response:
    return await client.post("/chat/completions", json=chat(content), **kw)


async def eventually(predicate: Callable[[], bool], limit_s: float = 3.0) -> None:
    """Wait for a condition the server reaches when the kernel delivers a socket event
    (e.g. a client's FIN); fail if it does not hold within ``limit_s`` seconds."""
    with trio.fail_after(limit_s):
        while not predicate():  # noqa: ASYNC110 - the change comes from the kernel, no event
            await trio.sleep(0.005)


def raw(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {len(body)}\r\n{headers}\r\n"
    return head.encode() + body


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    out = b""
    while data := await stream.receive_some(65536):
        out += data
    return out


# --- success path -----------------------------------------------------------------


async def test_success_shape_echo_and_usage(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    body = {
        "model": "judge-1",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hello there world"},
        ],
    }
    async with aclient(server.base_url) as client:
        r = await client.post("/chat/completions", json=body)
    assert r.status_code == 200
    data = r.json()
    assert data["object"] == "chat.completion"
    assert data["model"] == "judge-1"
    assert data["id"].startswith("chatcmpl-mock-")
    assert isinstance(data["created"], int)
    assert data["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "echo: hello there world"},
            "finish_reason": "stop",
        }
    ]
    assert data["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


async def test_paths_without_v1_and_models(nursery: trio.Nursery) -> None:
    server = await start(nursery, model="served-model")
    root = server.base_url.removesuffix("/v1")
    async with aclient(root) as client:
        r = await client.post("/chat/completions", json={"messages": [{"content": "x"}]})
        assert r.json()["choices"][0]["message"]["content"] == "echo: x"
        assert r.json()["model"] == "served-model"  # no model in the request
        for path in ("/v1/models", "/models"):
            models = (await client.get(path)).json()
            assert models["object"] == "list"
            assert [m["id"] for m in models["data"]] == ["served-model"]


async def test_multipart_content_is_echoed(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    parts = [{"type": "text", "text": "a "}, {"type": "image_url", "image_url": {}}, {"text": "b"}]
    async with aclient(server.base_url) as client:
        r = await client.post("/chat/completions", json={"messages": [{"content": parts}]})
    assert r.json()["choices"][0]["message"]["content"] == "echo: a b"


async def test_pluggable_responder_and_one_that_raises(nursery: trio.Nursery) -> None:
    def responder(body: dict[str, Any]) -> str:
        if body.get("boom"):
            raise KeyError("boom")
        return f"[[ ## answer ## ]]\n{len(body['messages'])}"

    server = await start(nursery, responder=responder)
    async with aclient(server.base_url) as client:
        ok = await post(client, "x")
        bad = await client.post("/chat/completions", json=chat("y", boom=True))
    assert ok.json()["choices"][0]["message"]["content"] == "[[ ## answer ## ]]\n1"
    assert bad.status_code == 500
    assert server.stats.responder_errors == 1


# --- request decoding and recording ----------------------------------------------


async def test_gzip_body_is_decoded_and_recorded(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    payload = json.dumps(chat("zip " * 200)).encode()
    packed = gzip.compress(payload)
    headers = {"content-encoding": "gzip", "content-type": "application/json"}
    async with aclient(server.base_url) as client:
        r = await client.post("/chat/completions", content=packed, headers=headers)
    assert r.json()["choices"][0]["message"]["content"] == "echo: " + "zip " * 200
    (rec,) = server.requests
    assert rec.headers["content-encoding"] == "gzip"
    assert rec.body == json.loads(payload)
    assert rec.wire_bytes == len(packed) < len(payload)


async def test_records_keep_headers_and_every_message_key(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    message = {
        "role": "user",
        "content": "q",
        "name": "alice",
        "cache_control": {"type": "ephemeral"},
        "tool_call_id": "t1",
    }
    body = {"model": "m", "messages": [message], "temperature": 0.0, "seed": 7}
    async with aclient(server.base_url) as client:
        await client.post("/chat/completions", json=body, headers={"Authorization": "Bearer k"})
        await client.post("/chat/completions", json=body)
    with_key, without_key = server.requests
    assert with_key.headers["authorization"] == "Bearer k"
    assert "authorization" not in without_key.headers
    assert with_key.body == body
    assert (with_key.method, with_key.path, with_key.outcome) == (
        "POST",
        "/v1/chat/completions",
        "ok",
    )
    assert without_key.received_at >= with_key.received_at


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (raw("POST", "/v1/chat/completions", b"{not json"), 400),
        (raw("POST", "/v1/chat/completions", b'{"messages": []}'), 400),
        (raw("POST", "/v1/chat/completions", b"[1]"), 400),
        (raw("POST", "/v1/chat/completions", b'{"messages":[{"content":"#mock:oops=1"}]}'), 400),
        (raw("POST", "/v1/chat/completions", b'{"messages":[{"content":"#mock:fault=abc"}]}'), 400),
        (raw("GET", "/v1/chat/completions"), 405),
        (raw("POST", "/v1/models"), 405),
        (raw("GET", "/v2/nothing"), 404),
        (raw("POST", "/v1/chat/completions", b"xx", "content-encoding: br\r\n"), 415),
        (raw("POST", "/v1/chat/completions", b"xx", "content-encoding: gzip\r\n"), 400),
    ],
)
async def test_bad_requests_get_json_errors_and_are_recorded(
    nursery: trio.Nursery, request_bytes: bytes, status: int
) -> None:
    server = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(request_bytes)
        answer = await stream.receive_some(65536)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(f"HTTP/1.1 {status} ".encode())
    assert json.loads(body)["error"]["code"] == status
    assert [r.outcome for r in server.requests] == [str(status)]


async def test_chunked_body_is_refused_with_411_and_close(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        req = b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n"
        await stream.send_all(req + b"2\r\n{}\r\n0\r\n\r\n")
        answer = await read_until_eof(stream)
    assert answer.startswith(b"HTTP/1.1 411 ")
    assert b"connection: close" in answer


# --- deterministic faults -----------------------------------------------------------


@pytest.mark.parametrize("status", [500, 502, 503, 400, 401, 404, 408, 413, 422])
async def test_status_fault_then_success(nursery: trio.Nursery, status: int) -> None:
    server = await start(nursery)
    prompt = f"p #mock:fault={status}*2"
    async with aclient(server.base_url) as client:
        codes = [(await post(client, prompt)).status_code for _ in range(4)]
        other = await post(client, prompt + " ")  # another content has its own counter
    assert codes == [status, status, 200, 200]
    assert other.status_code == status
    assert server.attempts(prompt) == 4


async def test_429_retry_after_default_and_per_prompt(nursery: trio.Nursery) -> None:
    server = await start(nursery, retry_after_s=0.5)
    async with aclient(server.base_url) as client:
        default = await post(client, "#mock:fault=429")
        custom = await post(client, "#mock:fault=429 #mock:retry_after=1.5")
        on_503 = await post(client, "#mock:fault=503 #mock:retry_after=2")
        plain_503 = await post(client, "#mock:fault=503")
    assert (default.status_code, default.headers["retry-after"]) == (429, "0.5")
    assert (custom.status_code, custom.headers["retry-after"]) == (429, "1.5")
    assert (on_503.status_code, on_503.headers["retry-after"]) == (503, "2")
    assert "retry-after" not in plain_503.headers


async def test_sequence_picks_the_ith_entry_then_succeeds(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    prompt = "s #mock:fault=503,429,ok,500*2,null"
    async with aclient(server.base_url) as client:
        answers = [await post(client, prompt) for _ in range(8)]
    assert [a.status_code for a in answers] == [503, 429, 200, 500, 500, 200, 200, 200]
    assert answers[5].json()["choices"][0]["message"]["content"] is None
    assert answers[6].json()["choices"][0]["message"]["content"] == "echo: " + prompt
    outcomes = [r.outcome for r in server.requests]
    assert outcomes == ["503", "429", "ok", "500", "500", "null", "ok", "ok"]


async def test_malformed_null_and_nochoices(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    async with aclient(server.base_url) as client:
        malformed = await post(client, "#mock:fault=malformed")
        null = await post(client, "#mock:fault=null")
        nochoices = await post(client, "#mock:fault=nochoices")
        after = await post(client, "#mock:fault=malformed")  # same connection still usable
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert null.json()["choices"][0]["message"] == {"role": "assistant", "content": None}
    assert nochoices.status_code == 200
    assert "choices" not in nochoices.json()
    assert "usage" in nochoices.json()
    assert after.status_code == 200
    assert server.stats.connections_accepted == 1


async def test_cut_announces_more_bytes_than_it_sends(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    async with aclient(server.base_url) as client:
        with pytest.raises(httpx.RemoteProtocolError):
            await post(client, "#mock:fault=cut")
        assert (await post(client, "#mock:fault=cut")).status_code == 200
    await eventually(lambda: server.stats.open_connections == 0)


async def test_reset_closes_with_rst(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(
            raw("POST", "/v1/chat/completions", b'{"messages":[{"content":"#mock:fault=reset"}]}')
        )
        with pytest.raises(trio.BrokenResourceError):  # ECONNRESET, not a clean EOF
            await read_until_eof(stream)
    async with aclient(server.base_url) as client:
        with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
            await post(client, "r #mock:fault=reset")
        assert (await post(client, "r #mock:fault=reset")).status_code == 200
    await eventually(lambda: server.stats.open_connections == 0)


async def test_hang_holds_until_the_client_goes_away(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    async with aclient(server.base_url, timeout=0.2) as client:
        with pytest.raises(httpx.ReadTimeout):
            await post(client, "#mock:fault=hang")
    await eventually(lambda: server.stats.in_flight == 0 and server.stats.open_connections == 0)
    assert server.stats.outcomes == {"hang": 1}


# --- latency, cancellation, capacity -------------------------------------------------


async def test_latency_fixed_jitter_and_per_prompt(nursery: trio.Nursery) -> None:
    server = await start(nursery, latency_s=0.05, latency_jitter_s=0.02, seed=3)
    async with aclient(server.base_url) as client:
        t0 = trio.current_time()
        await post(client, "a")
        t1 = trio.current_time()
        await post(client, "b #mock:latency=0.15")
        t2 = trio.current_time()
    assert t1 - t0 >= 0.05
    assert t2 - t1 >= 0.15


async def test_client_cancel_during_latency_closes_connection(nursery: trio.Nursery) -> None:
    server = await start(nursery, latency_s=30.0)
    async with aclient(server.base_url) as client:
        with trio.move_on_after(0.2) as scope:
            await post(client, "slow")
        assert scope.cancelled_caught
    # Well before the 30 s latency, the server noticed the client left.
    await eventually(lambda: server.stats.open_connections == 0 and server.stats.in_flight == 0)


async def test_capacity_answers_429_at_once(nursery: trio.Nursery) -> None:
    server = await start(nursery, capacity=2, retry_after_s=0.5, latency_s=30.0)
    async with (
        aclient(server.base_url, timeout=30) as client,
        trio.open_nursery() as slow,
    ):
        for i in range(2):
            slow.start_soon(post, client, f"slow {i}")
        await eventually(lambda: server.stats.in_flight == 2)
        with trio.fail_after(2):  # "at once", not after the 30 s latency
            refused = await post(client, "third")
        slow.cancel_scope.cancel()
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "0.5"
    assert server.requests[-1].outcome == "capacity"
    assert server.stats.max_in_flight == 3
    await eventually(lambda: server.stats.open_connections == 0)


# --- counters, keep-alive, reset ---------------------------------------------------------


async def test_keep_alive_serves_many_requests_on_one_connection(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    async with aclient(server.base_url) as client:
        for i in range(50):
            r = await post(client, f"n{i}")
            assert r.json()["choices"][0]["message"]["content"] == f"echo: n{i}"
        assert server.stats.open_connections == 1
    stats = server.stats
    assert (stats.requests_total, stats.connections_accepted) == (50, 1)
    assert {r.connection_id for r in server.requests} == {1}
    await eventually(lambda: server.stats.open_connections == 0)


async def test_pipelined_requests_answer_in_order(nursery: trio.Nursery) -> None:
    server = await start(nursery)
    reqs = [json.dumps(chat(f"p{i}")).encode() for i in range(3)]
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    async with stream:
        await stream.send_all(b"".join(raw("POST", "/v1/chat/completions", b) for b in reqs))
        data = b""
        while data.count(b"echo: p") < 3:
            data += await stream.receive_some(65536)
    assert [data.find(f"echo: p{i}".encode()) for i in range(3)] == sorted(
        data.find(f"echo: p{i}".encode()) for i in range(3)
    )


async def test_counters_and_reset(nursery: trio.Nursery) -> None:
    server = await start(nursery, latency_s=0.1)
    async with aclient(server.base_url) as client:
        async with trio.open_nursery() as burst:
            for i in range(5):
                burst.start_soon(post, client, f"c{i}")
        assert (await post(client, "#mock:fault=500")).status_code == 500
        stats = server.stats
        assert (stats.requests_total, stats.max_in_flight, stats.in_flight) == (6, 5, 0)
        assert stats.connections_accepted == stats.open_connections == 5
        assert stats.outcomes == {"ok": 5, "500": 1}
        server.reset()
        stats = server.stats
        assert (stats.requests_total, stats.max_in_flight, stats.connections_accepted) == (0, 0, 0)
        assert stats.open_connections == 5  # a live gauge, not reset
        assert server.requests == []
        # The per-content attempt counter restarted: the fault fires again.
        assert (await post(client, "#mock:fault=500")).status_code == 500


async def test_random_fault_rates_are_seeded(nursery: trio.Nursery) -> None:
    rates = {"500": 0.3, "429": 0.2}
    server = await start(nursery, fault_rates=rates, seed=11)
    async with aclient(server.base_url) as client:
        codes = [(await post(client, f"q{i}")).status_code for i in range(40)]
        directed = [(await post(client, "#mock:fault=ok")).status_code for _ in range(20)]
    roller, rng = FaultRoller(rates), random.Random(11)
    expected = [roller.roll(rng) for _ in range(40)]
    assert codes == [200 if k == "ok" else int(k) for k in expected]
    assert {500, 429, 200} <= set(codes)
    assert directed == [200] * 20  # a prompt with a fault directive never gets a random one


# --- runners and CLI ------------------------------------------------------------------------


def test_thread_runner_serves_and_stops_cleanly() -> None:
    before = {t for t in threading.enumerate() if t.name == "minimallm-mock"}  # other fixtures'
    with MockServerThread(MockServerConfig(model="t")) as mock:
        assert mock.base_url == f"http://127.0.0.1:{mock.port}/v1"
        with sclient(mock.base_url) as client:
            r = client.post("/chat/completions", json=chat("sync"))
        assert r.json()["choices"][0]["message"]["content"] == "echo: sync"
        assert mock.stats.requests_total == len(mock.requests) == 1
        mock.reset()
        assert mock.stats.requests_total == 0
        port = mock.port
    assert not [t for t in threading.enumerate() if t.name == "minimallm-mock" and t not in before]
    with pytest.raises(httpx.ConnectError), sclient() as client:
        client.get(f"http://127.0.0.1:{port}/v1/models")


def test_thread_runner_reports_a_bind_failure() -> None:
    with MockServerThread() as first:
        clash = MockServerThread(MockServerConfig(port=first.port))
        with pytest.raises(RuntimeError, match="failed to start") as info:
            clash.start()
        assert isinstance(info.value.__cause__, BaseExceptionGroup | OSError)


def test_process_runner_serves_and_terminates() -> None:
    with MockServerProcess(MockServerConfig(capacity=8, fault_rates={"503": 0.0})) as mock:
        with sclient(mock.base_url) as client:
            assert client.post("/chat/completions", json=chat("proc")).status_code == 200
        assert mock.stats.requests_total == 1
        mock.reset()
        assert mock.stats.requests_total == 0
        assert mock.returncode is None
    assert mock.returncode == 0  # stopped by SIGTERM, exited cleanly


def test_cli_arguments_round_trip() -> None:
    config = MockServerConfig(
        host="127.0.0.2",
        port=1234,
        model="x",
        latency_s=0.1,
        latency_jitter_s=0.05,
        capacity=64,
        retry_after_s=0.5,
        fault_rates={"429": 0.01, "reset": 0.002},
        seed=None,
        max_records=5,
    )
    assert config_from_args(build_parser().parse_args(config_to_argv(config))) == config
    with pytest.raises(ConfigError, match="responder"):
        config_to_argv(MockServerConfig(responder=lambda body: "x"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--fault-rate", "429"])


@pytest.mark.parametrize(
    "kw",
    [
        {"latency_s": -1},
        {"latency_jitter_s": float("nan")},
        {"capacity": 0},
        {"fault_rates": {"teapot": 0.1}},
        {"fault_rates": {"500": 0.7, "503": 0.7}},
        {"fault_rates": {"500": 1.5}},
        {"port": 70000},
    ],
)
def test_config_refuses_bad_values(kw: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match=next(iter(kw))):
        MockServerConfig(**kw)


# --- pure parts: directives and the HTTP parser -----------------------------------------------


def test_parse_directives() -> None:
    d = parse_directives("x #mock:fault=500*2,reset,429 #mock:retry_after=1.5 #mock:latency=0")
    assert d.faults == ("500", "500", "reset", "429")
    assert (d.retry_after_s, d.latency_s) == (1.5, 0.0)
    assert parse_directives("no directives").faults == ()
    for bad in ("#mock:fault=600", "#mock:fault=500*0", "#mock:latency=-1", "#mock:nope=1"):
        with pytest.raises(DirectiveError):
            parse_directives(bad)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["500", "429", "ok", "hang"]), st.integers(1, 3))))
def test_sequence_attempts_follow_the_expanded_list(items: list[tuple[str, int]]) -> None:
    spec = ",".join(f"{k}*{n}" for k, n in items) or "ok"
    faults = parse_directives(f"#mock:fault={spec}").faults
    expanded = [k for k, n in items for _ in range(n)] or ["ok"]
    seqs = FaultSequences()
    got = [seqs.next_kind("c", faults) for _ in range(len(expanded) + 3)]
    assert got == [*expanded, "ok", "ok", "ok"]


@settings(max_examples=50, deadline=None)
@given(st.data())
def test_parser_gives_the_same_requests_however_bytes_are_split(data: st.DataObject) -> None:
    bodies = [b'{"a":1}', b"", json.dumps(chat("x" * 300)).encode()]
    wire = b"".join(
        raw("POST", f"/p{i}?q=1", b, "X-Dup: 1\r\nx-dup: 2\r\n") for i, b in enumerate(bodies)
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=8)))
    parser, got = RequestParser(), []
    for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True):
        parser.feed(wire[a:b])
        while (req := parser.next_request()) is not None:
            got.append(req)
    assert [(r.path, r.body, r.keep_alive) for r in got] == [
        (f"/p{i}", b, True) for i, b in enumerate(bodies)
    ]
    assert got[0].headers["x-dup"] == "1, 2"
    assert parser.buffered == 0


def test_parser_edge_cases() -> None:
    p = RequestParser()
    p.feed(b"POST / HTTP/1.1\r\nexpect: 100-continue\r\ncontent-length: 2\r\n\r\n")
    assert p.next_request() is None
    assert p.take_continue() and not p.take_continue()  # once per request
    p.feed(b"{}")
    assert p.next_request() is not None
    p.feed(b"GET / HTTP/1.0\r\n\r\n")
    req = p.next_request()
    assert req is not None and not req.keep_alive
    for bad, status in [
        (b"GARBAGE\r\n\r\n", 400),
        (b"GET / HTTP/2.0\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\ncontent-length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\ncontent-length: 999999999999\r\n\r\n", 413),
        (b"GET / HTTP/1.1\r\nx: " + b"a" * 70_000, 431),
    ]:
        q = RequestParser()
        q.feed(bad)
        with pytest.raises(HttpError) as info:
            q.next_request()
        assert info.value.status == status


class _HandlerSteps(trio.abc.Instrument):
    """Counts the task steps of the mock's connection handlers."""

    def __init__(self) -> None:
        self.steps = 0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        if task.name.endswith("_run_handler"):
            self.steps += 1


async def test_a_pipelining_client_gets_a_turn_per_request_not_one_burst(
    nursery: trio.Nursery,
) -> None:
    """Answering does not yield, so the handler yields before each request that was
    already in its buffer: a client that pipelines cannot hold the server."""
    server = await start(nursery)
    n = 100
    stream = await trio.open_tcp_stream("127.0.0.1", server.port)
    counter = _HandlerSteps()
    trio.lowlevel.add_instrument(counter)
    try:
        await stream.send_all(raw("GET", "/v1/models") * n)
        received = b""
        while received.count(b"HTTP/1.1 200") < n:
            received += await stream.receive_some(65536)
    finally:
        trio.lowlevel.remove_instrument(counter)
        await stream.aclose()
    assert counter.steps >= n


@settings(max_examples=300, deadline=None)
@example(b'{"a":"\xed\xa0\x80"}')  # an encoded lone surrogate: json.loads takes it
@given(
    st.one_of(
        st.binary(max_size=40),
        st.builds(lambda b: b"{" + b, st.binary(max_size=40)),
        st.builds(
            lambda text, codec: json.dumps({"t": text}, ensure_ascii=False).encode(
                codec, "surrogatepass"
            ),
            st.text(st.characters(exclude_categories=()), max_size=10),  # surrogates too
            st.sampled_from(["utf-8", "utf-8-sig", "utf-16", "utf-16-le", "utf-32-be"]),
        ),
    )
)
def test_request_bodies_decode_as_json_loads_decodes_them(raw_body: bytes) -> None:
    """The mock's fast path for UTF-8 bodies decodes what ``json.loads(bytes)`` decodes
    and refuses what it refuses (BOMs, UTF-16/32, lone surrogates, bad UTF-8)."""
    from minimallm.mock.server import _json_body

    def outcome(decode: Callable[[bytes], Any]) -> tuple[str, str]:
        try:
            return "ok", repr(decode(raw_body))  # repr: NaN is not equal to itself
        except ValueError as exc:
            return type(exc).__name__, ""

    if raw_body:
        assert outcome(_json_body) == outcome(json.loads)
    else:
        assert _json_body(raw_body) is None
