"""TLS trust: which CAs (setting, SSL_CERT_FILE/SSL_CERT_DIR, certifi), what a refused
certificate becomes (one handshake, not retried, says how to trust a CA), and the
settings' own validation."""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trio
from scripted import Peer, ok, read_request, serve

from minimallm import ConfigError, MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse
from minimallm._backend import OpenAIMinimaLlm
from minimallm._config.settings import MinimaLlmConfig
from minimallm._http.tls import TlsTrust

trustme = pytest.importorskip("trustme", reason="trustme makes the test CA")

ConfigFactory = Callable[..., MinimaLlmConfig]
ANSWER = ok(json.dumps({"choices": [{"message": {"content": "secure"}}]}).encode())


@pytest.fixture
def ca(tmp_path: Path) -> tuple[Any, Path]:
    authority = trustme.CA()
    path = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(path))
    return authority, path


@asynccontextmanager
async def tls_server(authority: Any) -> AsyncIterator[tuple[str, Peer]]:
    """A TLS server for 127.0.0.1 (certificate from ``authority``) answering completions."""
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_ctx)
    box: list[Peer] = []

    async def handler(stream: trio.SocketStream, index: int) -> None:
        buf = bytearray()
        while await read_request(stream, box[0], buf):
            await stream.send_all(ANSWER)

    async with serve(handler, server_ctx) as (url, peer):
        box.append(peer)
        yield url.split("/v1")[0] + "/v1", peer


async def ask(cfg: MinimaLlmConfig) -> MinimaLlmResponse | MinimaLlmFailure:
    async with OpenAIMinimaLlm(cfg) as backend:
        return await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "x"}]))


def test_trust_order_setting_then_environment_then_certifi(tmp_path: Path) -> None:
    env = {"SSL_CERT_FILE": "/env/ca.pem", "SSL_CERT_DIR": "/env/certs"}
    assert TlsTrust.choose("/cfg/ca.pem", True, env) == TlsTrust("/cfg/ca.pem", source="CA_BUNDLE")
    assert TlsTrust.choose(str(tmp_path), True, env) == TlsTrust(
        capath=str(tmp_path), source="CA_BUNDLE"
    )
    assert TlsTrust.choose(None, True, env) == TlsTrust(
        "/env/ca.pem", "/env/certs", source="SSL_CERT_FILE and SSL_CERT_DIR"
    )
    assert TlsTrust.choose(None, True, {"SSL_CERT_DIR": "/d"}).source == "SSL_CERT_DIR"
    assert TlsTrust.choose(None, True, {"SSL_CERT_FILE": ""}) == TlsTrust()
    assert TlsTrust.choose("/cfg/ca.pem", False, env) == TlsTrust(
        verify=False, source="TLS_VERIFY=0"
    )


@pytest.mark.parametrize("how", ["SSL_CERT_FILE", "SSL_CERT_DIR", "ca_bundle", "CA_BUNDLE dir"])
async def test_a_custom_ca_is_trusted(
    how: str,
    ca: tuple[Any, Path],
    make_config: ConfigFactory,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    authority, ca_file = ca
    settings: dict[str, Any] = {}
    if how == "SSL_CERT_FILE":
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    elif how == "ca_bundle":
        settings["ca_bundle"] = ca_file
    else:  # a directory of hashed certificates, as c_rehash / openssl rehash make
        subject_hash = _subject_hash(ca_file)
        certs = tmp_path / "certs"
        certs.mkdir()
        (certs / f"{subject_hash}.0").write_bytes(ca_file.read_bytes())
        if how == "SSL_CERT_DIR":
            monkeypatch.setenv("SSL_CERT_DIR", str(certs))
        else:
            settings["ca_bundle"] = str(certs)
    async with tls_server(authority) as (base_url, peer):
        result = await ask(make_config(base_url=base_url, **settings))
    assert isinstance(result, MinimaLlmResponse) and result.text == "secure"
    assert peer.connections == 1


def _subject_hash(ca_file: Path) -> str:
    """The file name OpenSSL looks a CA up by in a certificate directory."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command names the hashed certificate file")
    out = subprocess.run(
        ["openssl", "x509", "-hash", "-noout", "-in", str(ca_file)],
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


async def test_an_untrusted_certificate_is_one_handshake_and_no_retry(
    ca: tuple[Any, Path], make_config: ConfigFactory
) -> None:
    authority, _ = ca
    async with tls_server(authority) as (base_url, peer):
        result = await ask(make_config(base_url=base_url, max_attempts=6))
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.attempts) == ("TLSVerificationError", 1)
    port = base_url.split(":")[2].split("/")[0]
    assert result.message.startswith(
        f"TLSVerificationError: certificate verify failed for host 127.0.0.1:{port}: "
    )
    assert "(trusted: certifi) - trust your CA with SSL_CERT_FILE=/path/ca.pem" in result.message
    assert peer.connections == 1


async def test_a_bad_ssl_cert_file_fails_each_request_once_naming_it(
    ca: tuple[Any, Path], make_config: ConfigFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", "/no/such/ca.pem")
    authority, _ = ca
    async with tls_server(authority) as (base_url, peer):
        result = await ask(make_config(base_url=base_url, max_attempts=6))
    assert isinstance(result, MinimaLlmFailure)
    assert (result.error_type, result.attempts) == ("TLSVerificationError", 1)
    assert "the CA certificates from SSL_CERT_FILE cannot be loaded" in result.message
    assert peer.connections == 0


async def test_tls_verify_off_warns_and_connects(
    ca: tuple[Any, Path], make_config: ConfigFactory
) -> None:
    authority, _ = ca
    async with tls_server(authority) as (base_url, _):
        with pytest.warns(RuntimeWarning, match="TLS certificate verification is OFF"):
            result = await ask(make_config(base_url=base_url, tls_verify=False))
    assert isinstance(result, MinimaLlmResponse)


async def test_https_to_a_plain_http_port_says_so(make_config: ConfigFactory) -> None:
    box: list[Peer] = []

    async def plain_http(stream: trio.SocketStream, index: int) -> None:
        await stream.receive_some(4096)  # a ClientHello is no request: 400, as nginx does
        await stream.send_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
        await stream.aclose()

    async with serve(plain_http) as (url, peer):
        box.append(peer)
        base_url = url.replace("http://", "https://").split("/v1")[0] + "/v1"
        result = await ask(make_config(base_url=base_url, max_attempts=1))
    assert isinstance(result, MinimaLlmFailure) and result.error_type == "ConnectError"
    assert "does not speak TLS there: is it an http:// endpoint?" in result.message


def test_ca_bundle_is_checked_with_the_configuration(tmp_path: Path) -> None:
    base = {"OPENAI_BASE_URL": "https://x/v1", "OPENAI_MODEL": "m"}
    with pytest.raises(ConfigError, match=r"CA_BUNDLE='/no/such.pem': cannot be loaded"):
        MinimaLlmConfig.from_env({**base, "CA_BUNDLE": "/no/such.pem"})
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match=r"ca_bundle=.*must be a PEM file"):
        MinimaLlmConfig(base_url="https://x/v1", model="m", ca_bundle=str(junk))
    with pytest.raises(ConfigError, match="TLS_VERIFY='maybe': must be true or false"):
        MinimaLlmConfig.from_env({**base, "TLS_VERIFY": "maybe"})
    with pytest.raises(ConfigError, match="MAX_RESPONSE_BYTES=10: must be an integer >= 1024"):
        MinimaLlmConfig.from_env({**base, "MAX_RESPONSE_BYTES": "10"})
