"""A key that a server echoes in a 200 answer never reaches the cache (issue 19)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from conftest import SECRET
from minimallm import MinimaLlmConfig, MinimaLlmRequest, MinimaLlmResponse
from minimallm._backend import OpenAIMinimaLlm
from minimallm.mock import MockServerConfig, MockServerThread


def echo_the_key(body: dict[str, Any]) -> str:
    """A server that repeats the key it was sent (as an error page or a debug echo may)."""
    return f"you sent Bearer {SECRET} with {len(body['messages'])} message"


def test_an_echoed_key_is_redacted_before_the_cache_stores_the_answer(
    tmp_path: Path,
) -> None:
    req = MinimaLlmRequest("r", [{"role": "user", "content": "hello"}])
    with MockServerThread(MockServerConfig(responder=echo_the_key)) as mock:
        cfg = MinimaLlmConfig(
            base_url=mock.base_url, model="m", api_key=SECRET, rpm=0, cache_dir=str(tmp_path)
        )
        backend = OpenAIMinimaLlm(cfg)
        first = backend.generate_sync(req)
        backend.close_sync()
        assert isinstance(first, MinimaLlmResponse) and not first.cached
        files = sorted(tmp_path.iterdir())
        assert [f.name for f in files] == ["minima_llm.db"]
        data = files[0].read_bytes()
        assert SECRET.encode() not in data  # neither the text nor the raw body
        assert b"you sent Bearer *** with 1 message" in data
        backend = OpenAIMinimaLlm(cfg)
        again = backend.generate_sync(req)
        backend.close_sync()
    assert isinstance(again, MinimaLlmResponse) and again.cached
    assert again.text == "you sent Bearer *** with 1 message"
    assert again.raw is not None and SECRET not in str(again.raw)
