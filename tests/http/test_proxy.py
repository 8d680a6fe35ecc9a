"""Proxies: which variable applies (urllib's rules), NO_PROXY, credentials, and the
proxy conversation (absolute form, CONNECT + TLS, refusals) against scripted proxies."""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable

import pytest
import trio
from scripted import HEADERS, Peer, ok, read_request, serve

from minimallm import MinimaLlmFailure, MinimaLlmRequest
from minimallm._backend import OpenAIMinimaLlm
from minimallm._config.settings import MinimaLlmConfig
from minimallm._http import errors
from minimallm._http.connection import Http11Connection
from minimallm._http.proxy import Proxy, ProxySettings

ConfigFactory = Callable[..., MinimaLlmConfig]
API = "https://api.example.com/v1/chat/completions"


def settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> ProxySettings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return ProxySettings.from_environment()


def chosen(monkeypatch: pytest.MonkeyPatch, url: str, **env: str) -> str | None:
    proxy = settings(monkeypatch, **env).proxy_for(url)
    return None if proxy is None else f"{proxy.host}:{proxy.port} {proxy.source}"


def test_each_scheme_has_its_variable_and_all_proxy_is_the_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"HTTP_PROXY": "http://h:1", "HTTPS_PROXY": "http://s:2", "ALL_PROXY": "http://a:3"}
    assert chosen(monkeypatch, "http://x/v1", **env) == "h:1 HTTP_PROXY"
    assert chosen(monkeypatch, "https://x/v1", **env) == "s:2 HTTPS_PROXY"
    monkeypatch.delenv("HTTPS_PROXY")
    assert chosen(monkeypatch, "https://x/v1") == "a:3 ALL_PROXY"


def test_lower_case_wins_and_an_empty_lower_case_unsets(monkeypatch: pytest.MonkeyPatch) -> None:
    assert chosen(monkeypatch, API, HTTPS_PROXY="up:1", https_proxy="low:2") == "low:2 https_proxy"
    assert chosen(monkeypatch, API, https_proxy="") is None


def test_a_cgi_request_method_disables_upper_case_http_proxy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # CVE-2016-1000110: a client's "Proxy:" header becomes HTTP_PROXY in CGI.
    assert chosen(monkeypatch, "http://x/", HTTP_PROXY="evil:1", REQUEST_METHOD="GET") is None
    assert chosen(monkeypatch, "http://x/", http_proxy="mine:2") == "mine:2 http_proxy"


@pytest.mark.parametrize(
    ("no_proxy", "url", "bypassed"),
    [
        ("*", API, True),
        ("api.example.com", API, True),
        ("example.com", API, True),  # a domain suffix
        (".example.com", API, True),
        ("badexample.com", "https://example.com/", False),
        ("example.com", "https://badexample.com/", False),  # only whole labels
        ("localhost:8000", "http://localhost:8000/v1", True),  # host:port
        ("localhost:9000", "http://localhost:8000/v1", False),
        ("10.0.0.1, api.example.com ", API, True),  # a list, spaces ignored
        ("other.org", API, False),
    ],
)
def test_no_proxy_forms(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, url: str, bypassed: bool
) -> None:
    env = {"ALL_PROXY": "http://p:3128", "NO_PROXY": no_proxy}
    assert (chosen(monkeypatch, url, **env) is None) is bypassed


def test_credentials_become_basic_auth_and_never_show(monkeypatch: pytest.MonkeyPatch) -> None:
    proxy = settings(monkeypatch, HTTPS_PROXY="http://us%40er:p%3Ass@proxy:3128").proxy_for(API)
    assert proxy is not None
    assert proxy.authorization == b"Basic " + base64.b64encode(b"us@er:p:ss")
    assert "p%3Ass" not in repr(proxy) and "ss" not in proxy.label
    assert repr(proxy) == "<Proxy http://proxy:3128 with credentials from HTTPS_PROXY>"


def test_proxy_urls_without_scheme_and_bad_ones() -> None:
    assert Proxy.parse("proxy:3128", "X") == Proxy("http", "proxy", 3128, "X")
    assert Proxy.parse("https://proxy", "X") == Proxy("https", "proxy", 443, "X")
    with pytest.raises(ValueError, match=r"ALL_PROXY names a socks5:// proxy.*TRUST_ENV_PROXY=0"):
        Proxy.parse("socks5://proxy:1080", "ALL_PROXY")
    with pytest.raises(ValueError, match="HTTP_PROXY has an invalid proxy URL"):
        Proxy.parse("http://proxy:99999", "HTTP_PROXY")


# -- the conversation with a proxy ------------------------------------------------------


def port_of(url: str) -> int:
    return int(url.split(":")[2].split("/")[0])


async def test_an_http_endpoint_is_asked_for_in_absolute_form() -> None:
    box: list[Peer] = []

    async def proxy_handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        while await read_request(stream, box[0], buf):
            await stream.send_all(ok(b"via proxy"))

    async with serve(proxy_handler) as (url, peer):
        box.append(peer)
        proxy = Proxy("http", "127.0.0.1", port_of(url), "HTTP_PROXY", b"Basic dTpw")
        conn = Http11Connection("http://origin.test:8000/v1/chat/completions", proxy=proxy)
        assert (await conn.post(HEADERS, b"x")).body == b"via proxy"
        assert (await conn.post(HEADERS, b"y")).body == b"via proxy"
        await conn.aclose()
    head = peer.requests[0][0].split(b"\r\n")
    assert head[:3] == [
        b"POST http://origin.test:8000/v1/chat/completions HTTP/1.1",
        b"host: origin.test:8000",
        b"proxy-authorization: Basic dTpw",
    ]
    assert peer.connections == 1


def tunnel_server(
    box: list[Peer], answer: bytes, tls: ssl.SSLContext, seen: list[bytes]
) -> Callable[[trio.SocketStream, int], object]:
    """A proxy that answers CONNECT with ``answer`` and, on 200, is the TLS origin itself."""

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            buf += await stream.receive_some(4096)
        seen.append(bytes(buf))
        await stream.send_all(answer)
        if not answer.startswith(b"HTTP/1.1 200"):
            await stream.aclose()
            return
        origin = trio.SSLStream(stream, tls, server_side=True, https_compatible=True)
        buf.clear()
        while await read_request(origin, box[0], buf):  # type: ignore[arg-type]
            await origin.send_all(ok(b"through the tunnel"))

    return handler


@pytest.fixture
def origin_tls() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) contexts for a certificate of origin.test from a test CA."""
    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("origin.test").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


async def test_an_https_endpoint_goes_through_a_connect_tunnel(
    origin_tls: tuple[ssl.SSLContext, ssl.SSLContext],
) -> None:
    server_ctx, client_ctx = origin_tls
    box: list[Peer] = []
    seen: list[bytes] = []
    handler = tunnel_server(box, b"HTTP/1.1 200 Connection established\r\n\r\n", server_ctx, seen)
    async with serve(handler) as (url, peer):  # type: ignore[arg-type]
        box.append(peer)
        proxy = Proxy("http", "127.0.0.1", port_of(url), "HTTPS_PROXY", b"Basic dTpw")
        conn = Http11Connection(
            "https://origin.test/v1/chat/completions", ssl_context=client_ctx, proxy=proxy
        )
        assert (await conn.post(HEADERS, b"x")).body == b"through the tunnel"
        assert (await conn.post(HEADERS, b"y")).body == b"through the tunnel"
        await conn.aclose()
    assert seen == [
        b"CONNECT origin.test:443 HTTP/1.1\r\nhost: origin.test:443\r\n"
        b"proxy-authorization: Basic dTpw\r\n\r\n"
    ]
    # inside the tunnel: origin form, no proxy credentials
    assert peer.requests[0][0].split(b"\r\n")[:2] == [
        b"POST /v1/chat/completions HTTP/1.1",
        b"host: origin.test",
    ]
    assert b"proxy-authorization" not in peer.requests[0][0]
    assert (peer.connections, len(peer.requests)) == (1, 2)


@pytest.mark.parametrize(
    ("answer", "error", "message"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", errors.ProxyRejectedError,
         "check the user:password in HTTPS_PROXY"),
        (b"HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n", errors.ProxyRejectedError,
         "answered CONNECT origin.test:443 with 'HTTP/1.1 403 Forbidden'"),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", errors.ProxyError, "502 Bad Gateway"),
        (b"", errors.ProxyError, "closed the connection during CONNECT"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", errors.ProxyError, "answered CONNECT origin.test:443 with"),
    ],
)  # fmt: skip
async def test_a_tunnel_refused_names_the_proxy(
    answer: bytes, error: type[Exception], message: str
) -> None:
    box: list[Peer] = []
    seen: list[bytes] = []
    handler = tunnel_server(box, answer, ssl.create_default_context(), seen)
    async with serve(handler) as (url, peer):  # type: ignore[arg-type]
        box.append(peer)
        proxy = Proxy("http", "127.0.0.1", port_of(url), "HTTPS_PROXY")
        conn = Http11Connection(
            "https://origin.test/v1", ssl_context=ssl.create_default_context(), proxy=proxy
        )
        with pytest.raises(error, match=message) as info:
            await conn.post(HEADERS, b"x")
    assert f"proxy 127.0.0.1:{port_of(url)} (from HTTPS_PROXY)" in str(info.value)


async def test_a_407_in_absolute_form_is_the_proxy_refusing() -> None:
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        await read_request(stream, box[0], bytearray())
        await stream.send_all(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")

    async with serve(handler) as (url, peer):
        box.append(peer)
        proxy = Proxy("http", "127.0.0.1", port_of(url), "http_proxy")
        conn = Http11Connection("http://origin.test/v1", proxy=proxy)
        with pytest.raises(errors.ProxyRejectedError, match="user:password in http_proxy"):
            await conn.post(HEADERS, b"x")


async def test_a_proxy_that_refuses_connections_is_named_with_its_variable(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    with trio.socket.socket() as s:
        await s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://user:secret@127.0.0.1:{port}")
    async with OpenAIMinimaLlm(make_config(max_attempts=2)) as backend:
        result = await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "x"}]))
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.attempts) == ("ProxyError", 2)
    assert f"proxy 127.0.0.1:{port} refused the connection (from HTTP_PROXY)" in result.message
    assert "secret" not in result.message


async def test_an_unusable_proxy_variable_fails_each_request_once(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("all_proxy", "socks5://127.0.0.1:1080")
    async with OpenAIMinimaLlm(make_config(max_attempts=6)) as backend:
        result = await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "x"}]))
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.attempts) == ("UnsupportedProtocol", 1)
    assert "all_proxy names a socks5:// proxy" in result.message


async def test_proxy_credentials_echoed_in_an_error_stay_out_of_the_failure(
    make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A proxy that echoes its Proxy-Authorization (and the user:password it encodes)
    in an error body: neither reaches the failure's message or body snippet."""
    box: list[Peer] = []
    user_pass = "alice:pr0xy-s3cret"
    token = base64.b64encode(user_pass.encode()).decode()

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        while await read_request(stream, box[0], buf):
            head = box[0].requests[-1][0].decode("latin-1")
            auth = next(
                line.split(":", 1)[1].strip()
                for line in head.split("\r\n")
                if line.lower().startswith("proxy-authorization:")
            )
            body = f"bad request: {auth} ({user_pass}) password pr0xy-s3cret".encode()
            await stream.send_all(
                b"HTTP/1.1 400 Bad Request\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)
            )

    async with serve(handler) as (url, peer):
        box.append(peer)
        monkeypatch.setenv("HTTP_PROXY", f"http://alice:pr0xy-s3cret@127.0.0.1:{port_of(url)}")
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        cfg = make_config(base_url="http://origin.test/v1", max_attempts=1)
        async with OpenAIMinimaLlm(cfg) as backend:
            result = await backend.generate(
                MinimaLlmRequest("r", [{"role": "user", "content": "x"}])
            )
    assert isinstance(result, MinimaLlmFailure), result
    assert result.status == 400
    assert f"Basic {token}".encode() in peer.requests[0][0]  # what was echoed was sent
    shown = f"{result.message} {result.body_snippet}"
    for secret in (token, user_pass, "pr0xy-s3cret"):
        assert secret not in shown, shown
    assert "bad request: Basic ***" in (result.body_snippet or "")
