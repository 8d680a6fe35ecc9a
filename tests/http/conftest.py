"""Fixtures of the integration tier: real nginx and tinyproxy, once per session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import real_servers

from minimallm.mock import MockServerThread


@pytest.fixture(scope="session")
def real_nginx(
    _mock_thread: MockServerThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[real_servers.Nginx]:
    """nginx in front of the session's mock server (see ``real_servers``)."""
    with real_servers.nginx(tmp_path_factory.mktemp("nginx"), _mock_thread.port) as server:
        yield server


@pytest.fixture(scope="session")
def real_tinyproxy(
    real_nginx: real_servers.Nginx, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[real_servers.TinyProxy]:
    """tinyproxy, allowed to CONNECT to nginx's TLS port."""
    with real_servers.tinyproxy(tmp_path_factory.mktemp("tinyproxy"), real_nginx.https_port) as p:
        yield p
