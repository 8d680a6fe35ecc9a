"""`minimallm mock --host`: a warning when the endpoint is reachable beyond this machine."""

from __future__ import annotations

import pytest

from minimallm.mock.cli import _beyond_loopback


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("127.0.0.1", None),
        ("::1", None),
        ("localhost", None),
        ("127.0.0.2", None),
        ("0.0.0.0", "every interface (0.0.0.0)"),
        ("::", "every interface (::)"),
        ("", "every interface (0.0.0.0)"),
        ("192.168.1.5", "192.168.1.5"),
        ("myhost", "myhost"),
    ],
)
def test_hosts_beyond_loopback_are_named(host: str, expected: str | None) -> None:
    assert _beyond_loopback(host) == expected
