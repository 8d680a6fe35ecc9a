"""The client against real infrastructure: nginx (keep-alive limits, forced gzip, TLS
with a CA made here) in front of the mock, and tinyproxy as a forward proxy.

Skipped when nginx or tinyproxy is missing, unless MINIMALLM_REQUIRE_INTEGRATION=1
(``.ci/run``). Every count asserted here comes from the servers' own logs and counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import real_servers
import trio
from real_servers import RACE_TIMEOUT_S, Nginx, TinyProxy

from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse, MinimaLlmResult
from minimallm._backend import OpenAIMinimaLlm
from minimallm._config.settings import MinimaLlmConfig
from minimallm._http.transport import (
    SingleConnectionTransport,
    request_headers,
    transport_factory_for,
)
from minimallm._runtime.serve import RuntimeOptions
from minimallm.mock import MockServerThread

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def real_nginx(
    _mock_thread: MockServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Nginx]:
    """nginx in front of the session's mock server (see ``real_servers``)."""
    with real_servers.nginx(tmp_path_factory.mktemp("nginx"), _mock_thread.port) as server:
        yield server


@pytest.fixture(scope="module")
def real_tinyproxy(
    real_nginx: Nginx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TinyProxy]:
    """tinyproxy, allowed to CONNECT to nginx's TLS port."""
    with real_servers.tinyproxy(tmp_path_factory.mktemp("tinyproxy"), real_nginx.https_port) as p:
        yield p


ConfigFactory = Callable[..., MinimaLlmConfig]


class Counted:
    """A runtime's transports, kept so a test can read their counters."""

    def __init__(self, cfg: MinimaLlmConfig) -> None:
        self._make = transport_factory_for(cfg)
        self.transports: list[SingleConnectionTransport] = []

    def __call__(self, url: str) -> SingleConnectionTransport:
        transport = self._make(url)
        self.transports.append(transport)
        return transport

    def total(self, name: str) -> int:
        return sum(getattr(t, name) for t in self.transports)


async def ask_many(
    cfg: MinimaLlmConfig, n: int, prefix: str = "item"
) -> tuple[list[MinimaLlmResult], Counted]:
    """``n`` concurrent generate() calls; results in order, and the transports used."""
    counted = Counted(cfg)
    results: list[MinimaLlmResult | None] = [None] * n
    async with OpenAIMinimaLlm(cfg, options=RuntimeOptions(counted)) as backend:

        async def call(i: int) -> None:
            req = MinimaLlmRequest(f"id-{i}", [{"role": "user", "content": f"{prefix} {i}"}])
            results[i] = await backend.generate(req)

        async with trio.open_nursery() as nursery:
            for i in range(n):
                nursery.start_soon(call, i)
    done = [r for r in results if r is not None]
    assert len(done) == n
    return done, counted


def all_correct(results: list[MinimaLlmResult], prefix: str = "item") -> bool:
    return all(
        isinstance(r, MinimaLlmResponse) and r.text == f"echo: {prefix} {i}"
        for i, r in enumerate(results)
    )


def failures(results: list[MinimaLlmResult]) -> list[MinimaLlmFailure]:
    return [r for r in results if isinstance(r, MinimaLlmFailure)]


def url(port: int, scheme: str = "http") -> str:
    return f"{scheme}://127.0.0.1:{port}/v1"


# -- proxies ----------------------------------------------------------------------------


@pytest.mark.parametrize("var", ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"])
async def test_every_request_goes_through_the_proxy_variable(
    var: str,
    real_nginx: Nginx,
    real_tinyproxy: TinyProxy,
    make_config: ConfigFactory,
    mock_server: MockServerThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(var, real_tinyproxy.url)
    before = len(real_tinyproxy.requests())
    cfg = make_config(base_url=url(real_nginx.http_port), max_outstanding=4)
    results, _ = await ask_many(cfg, 40)
    assert all_correct(results)
    logged = real_tinyproxy.requests()[before:]
    target = f"POST {url(real_nginx.http_port)}/chat/completions"
    assert logged == [target] * 40
    assert mock_server.stats.requests_total == 40


@pytest.mark.parametrize("var", ["HTTPS_PROXY", "https_proxy", "ALL_PROXY"])
async def test_an_https_endpoint_goes_through_a_connect_tunnel(
    var: str,
    real_nginx: Nginx,
    real_tinyproxy: TinyProxy,
    make_config: ConfigFactory,
    mock_server: MockServerThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(var, real_tinyproxy.url)
    monkeypatch.setenv("SSL_CERT_FILE", str(real_nginx.ca_file))
    before = len(real_tinyproxy.requests())
    cfg = make_config(base_url=url(real_nginx.https_port, "https"), max_outstanding=4)
    results, counted = await ask_many(cfg, 40)
    assert all_correct(results)
    logged = real_tinyproxy.requests()[before:]
    # Each connection is one tunnel; the requests inside it are TLS the proxy cannot read.
    assert counted.total("connects") >= 1
    assert logged == [f"CONNECT 127.0.0.1:{real_nginx.https_port}"] * counted.total("connects")
    assert mock_server.stats.requests_total == 40


@pytest.mark.parametrize(
    "no_proxy", ["127.0.0.1", "127.0.0.1:{port}", "*", "example.com,127.0.0.1"]
)
async def test_no_proxy_bypasses_the_proxy(
    no_proxy: str,
    real_nginx: Nginx,
    real_tinyproxy: TinyProxy,
    make_config: ConfigFactory,
    mock_server: MockServerThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", real_tinyproxy.url)
    monkeypatch.setenv("NO_PROXY", no_proxy.format(port=real_nginx.http_port))
    before = len(real_tinyproxy.requests())
    results, _ = await ask_many(make_config(base_url=url(real_nginx.http_port)), 10)
    assert all_correct(results)
    assert real_tinyproxy.requests()[before:] == []
    assert mock_server.stats.requests_total == 10


async def test_trust_env_proxy_off_ignores_the_variables(
    real_nginx: Nginx,
    real_tinyproxy: TinyProxy,
    make_config: ConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", real_tinyproxy.url)
    before = len(real_tinyproxy.requests())
    cfg = make_config(base_url=url(real_nginx.http_port), trust_env_proxy=False)
    results, _ = await ask_many(cfg, 10)
    assert all_correct(results)
    assert real_tinyproxy.requests()[before:] == []


@pytest.fixture(scope="module")
def auth_tinyproxy(
    real_nginx: Nginx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TinyProxy]:
    """tinyproxy asking for user "alice", password "s3cret"."""
    with real_servers.tinyproxy(
        tmp_path_factory.mktemp("auth"), real_nginx.https_port, basic_auth=("alice", "s3cret")
    ) as p:
        yield p


@pytest.mark.parametrize("scheme", ["http", "https"])
async def test_proxy_credentials_from_the_url(
    scheme: str,
    real_nginx: Nginx,
    auth_tinyproxy: TinyProxy,
    make_config: ConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    var = f"{scheme}_proxy"
    monkeypatch.setenv("SSL_CERT_FILE", str(real_nginx.ca_file))
    port = real_nginx.http_port if scheme == "http" else real_nginx.https_port
    monkeypatch.setenv(var, f"http://alice:s3cret@127.0.0.1:{auth_tinyproxy.port}")
    results, _ = await ask_many(make_config(base_url=url(port, scheme)), 10)
    assert all_correct(results)


async def test_a_proxy_refusing_the_password_is_one_failure_naming_it(
    real_nginx: Nginx,
    auth_tinyproxy: TinyProxy,
    make_config: ConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Over CONNECT. (In absolute form tinyproxy answers before reading the request
    body and closes: the reset destroys its answer in the client's kernel buffer, and
    the client sees a connection reset, retried; a scripted proxy tests that 407.)"""
    monkeypatch.setenv("SSL_CERT_FILE", str(real_nginx.ca_file))
    monkeypatch.setenv("HTTPS_PROXY", f"http://alice:wrong@127.0.0.1:{auth_tinyproxy.port}")
    cfg = make_config(base_url=url(real_nginx.https_port, "https"), max_attempts=6)
    results, _ = await ask_many(cfg, 3)
    assert len(failures(results)) == 3
    for failure in failures(results):
        assert (failure.error_type, failure.attempts) == ("ProxyError", 1)  # not retried
        assert f"proxy 127.0.0.1:{auth_tinyproxy.port} (from HTTPS_PROXY)" in failure.message
        assert "check the user:password in HTTPS_PROXY" in failure.message
        assert "wrong" not in failure.message


# -- TLS trust --------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["SSL_CERT_FILE", "ca_bundle"])
async def test_1000_https_requests_trusting_the_test_ca(
    how: str,
    real_nginx: Nginx,
    make_config: ConfigFactory,
    mock_server: MockServerThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings: dict[str, Any] = {"base_url": url(real_nginx.https_port, "https")}
    if how == "SSL_CERT_FILE":
        monkeypatch.setenv("SSL_CERT_FILE", str(real_nginx.ca_file))
    else:
        settings["ca_bundle"] = str(real_nginx.ca_file)
    results, counted = await ask_many(make_config(max_outstanding=16, **settings), 1000)
    assert all_correct(results)
    assert mock_server.stats.requests_total == 1000
    # keepalive_requests 50: a connection serves 50 requests, then a new handshake.
    assert 1000 // 50 <= counted.total("connects") <= 1000 // 50 + 16
    print(f"https {how}: 1000 correct, {counted.total('connects')} handshakes")


async def test_an_untrusted_certificate_fails_after_one_handshake_each(
    real_nginx: Nginx, make_config: ConfigFactory, mock_server: MockServerThread
) -> None:
    accepted, refused = real_nginx.accepted_connections(), real_nginx.handshakes_cut()
    cfg = make_config(base_url=url(real_nginx.https_port, "https"), max_attempts=6)
    results, _ = await ask_many(cfg, 20)
    failed = failures(results)
    assert len(failed) == 20
    for failure in failed:
        assert (failure.error_type, failure.attempts) == ("TLSVerificationError", 1)
        assert f"host 127.0.0.1:{real_nginx.https_port}" in failure.message
        assert "SSL_CERT_FILE=/path/ca.pem or CA_BUNDLE=" in failure.message
    # the status server's own connection counts once
    assert real_nginx.accepted_connections() - accepted == 20 + 1
    assert real_nginx.handshakes_cut() - refused == 20
    assert mock_server.stats.requests_total == 0


async def test_tls_verify_off_connects_and_warns(
    real_nginx: Nginx, make_config: ConfigFactory
) -> None:
    cfg = make_config(base_url=url(real_nginx.https_port, "https"), tls_verify=False)
    with pytest.warns(RuntimeWarning, match="verification is OFF"):
        results, _ = await ask_many(cfg, 5)
    assert all_correct(results)


# -- encodings and keep-alive -----------------------------------------------------------


async def test_1000_requests_through_forced_gzip(
    real_nginx: Nginx, make_config: ConfigFactory, mock_server: MockServerThread
) -> None:
    results, counted = await ask_many(make_config(base_url=url(real_nginx.http_port)), 1000)
    assert all_correct(results)
    assert mock_server.stats.requests_total == 1000  # no completion thrown away
    assert counted.total("connects") >= 1000 // 50  # keepalive_requests 50 was honoured
    print(f"gzip: 1000 correct, upstream saw 1000, {counted.total('connects')} connections")


async def test_gzip_is_decoded_even_when_not_asked_for(real_nginx: Nginx) -> None:
    transport = SingleConnectionTransport(f"{url(real_nginx.http_port)}/chat/completions")
    body = b'{"model": "m", "messages": [{"role": "user", "content": "unasked"}]}'
    for headers in (request_headers(None, compress=False), ((b"content-type", b"x"),)):
        reply = await transport.post(headers, body)
        assert reply.headers["content-encoding"] == "gzip"
        assert b'"echo: unasked"' in reply.body
    await transport.aclose()


async def test_keepalive_timeout_races_cost_no_attempt(
    real_nginx: Nginx, make_config: ConfigFactory, mock_server: MockServerThread
) -> None:
    """32 backends of one connection each send a request every keepalive_timeout plus
    an offset of their own (-3.2 ms .. +3 ms), so some connections are reused just as
    nginx closes them. A connection closed as the request goes out is re-sent inside
    the transport: MAX_ATTEMPTS=1 leaves no room for a retry, and nothing fails."""
    cfg = make_config(base_url=url(real_nginx.race_port), max_attempts=1, max_outstanding=1)
    lanes = [Counted(cfg) for _ in range(32)]
    failed: list[MinimaLlmFailure] = []

    async def lane(i: int) -> None:
        async with OpenAIMinimaLlm(cfg, options=RuntimeOptions(lanes[i])) as backend:
            for round_ in range(4):
                content = f"r {i} {round_}"
                req = MinimaLlmRequest(content, [{"role": "user", "content": content}])
                result = await backend.generate(req)
                if isinstance(result, MinimaLlmFailure):
                    failed.append(result)
                # real time: nginx's idle timer is the subject
                await trio.sleep(RACE_TIMEOUT_S + (i - 16) * 0.0002)

    async with trio.open_nursery() as nursery:
        for i in range(32):
            nursery.start_soon(lane, i)
    assert failed == []
    assert mock_server.stats.requests_total == 32 * 4
    resent = sum(c.total("resent") for c in lanes)
    connects = sum(c.total("connects") for c in lanes)
    print(f"race: {resent} re-sent, {connects} connects")
