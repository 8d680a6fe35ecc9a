"""The loopback rule and the client key."""

from __future__ import annotations

import pytest

from minimallm.serve.auth import KEY_ENV, ServeKeyError, check_bind, is_loopback, key_accepted


@pytest.mark.parametrize("host", ["127.0.0.1", "127.5.0.1", "::1", "[::1]", "localhost"])
def test_loopback(host: str) -> None:
    assert is_loopback(host)
    assert check_bind(host, {}) is None


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "example.org"])
def test_non_loopback_needs_the_key(host: str) -> None:
    with pytest.raises(ServeKeyError, match=KEY_ENV):
        check_bind(host, {})
    assert check_bind(host, {KEY_ENV: " s3cret "}) == b"s3cret"


def test_the_key_is_checked() -> None:
    assert key_accepted(None, None)
    assert key_accepted(b"k", "Bearer k") and key_accepted(b"k", "bearer  k ")
    assert not key_accepted(b"k", None)
    assert not key_accepted(b"k", "Bearer kk")
    assert not key_accepted(b"k", "Basic k")
