"""Shared fixtures: the project's mock server on loopback, and backends pointed at it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from minimallm._backend import OpenAIMinimaLlm
from minimallm._config.settings import MinimaLlmConfig
from minimallm.mock import MockServerConfig, MockServerThread

SECRET = "sk-test-DO-NOT-LEAK-1234567890"


@pytest.fixture(autouse=True)
def _no_proxy_or_ca_from_the_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """A proxy variable of the machine would send the tests' loopback traffic to it; its
    SSL_CERT_FILE/SSL_CERT_DIR would change what the TLS tests trust."""
    for name in ("http", "https", "all", "no"):
        for var in (f"{name}_proxy", f"{name.upper()}_PROXY"):
            monkeypatch.delenv(var, raising=False)
    for var in ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUEST_METHOD"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture(scope="session")
def _mock_thread() -> Iterator[MockServerThread]:
    with MockServerThread(MockServerConfig()) as mock:
        yield mock


@pytest.fixture
def mock_server(_mock_thread: MockServerThread) -> MockServerThread:
    """A loopback OpenAI-compatible server (session-wide thread, reset per test)."""
    _mock_thread.reset()
    return _mock_thread


@pytest.fixture
def make_config(mock_server: MockServerThread) -> Callable[..., MinimaLlmConfig]:
    """Config for the mock server with fast retries; keyword overrides win."""

    def make(**overrides: Any) -> MinimaLlmConfig:
        settings: dict[str, Any] = {
            "base_url": mock_server.base_url,
            "model": "mock-model",
            "api_key": SECRET,
            "rpm": 0,
            "base_backoff_s": 0.01,
            "max_backoff_s": 0.05,
            "timeout_s": 5.0,
            "max_outstanding": 4,
        }
        settings.update(overrides)
        return MinimaLlmConfig(**settings)

    return make


@pytest.fixture
def make_backend(make_config: Callable[..., MinimaLlmConfig]) -> Callable[..., OpenAIMinimaLlm]:
    def make(**overrides: Any) -> OpenAIMinimaLlm:
        return OpenAIMinimaLlm(make_config(**overrides))

    return make
