"""The API key never appears in a failure, repr, log line, progress line, pickle or cache."""

from __future__ import annotations

import io
import logging
import pickle
import random
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import SECRET
from fakes import FakeServer, Script
from minimallm import (
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    OpenAIMinimaLlm,
)
from minimallm._runtime.serve import RuntimeOptions


def leak_free(*things: object) -> None:
    for thing in things:
        for text in (repr(thing), str(thing)):
            assert SECRET not in text
            assert SECRET[8:] not in text  # not even the tail of it


def test_config_and_backend_never_show_the_key(make_config: Callable[..., MinimaLlmConfig]) -> None:
    cfg = make_config()
    assert cfg.api_key_value() == SECRET
    backend = OpenAIMinimaLlm(cfg)
    leak_free(cfg, cfg.describe(), backend, cfg.api_key)
    assert SECRET.encode() not in pickle.dumps(cfg)
    with pytest.raises(TypeError) as info:
        pickle.dumps(backend)
    leak_free(info.value)


async def test_a_server_echoing_the_key_does_not_leak_it_into_failures(tmp_path: Path) -> None:
    body = f'{{"error": "bad key Bearer {SECRET}"}}'.encode()
    server = FakeServer(lambda c, n: Script(status=401, body=body))
    cfg = MinimaLlmConfig(
        base_url="http://fake.invalid",
        model="m",
        api_key=SECRET,
        cache_dir=str(tmp_path),
        batch=BatchConfig(heartbeat_s=1, print_first_failures=5),
    )
    lines = io.StringIO()
    async with OpenAIMinimaLlm(
        cfg, options=RuntimeOptions(server.transport, random.Random(0))
    ) as b:
        [failure] = await b.run_batched(
            [MinimaLlmRequest("r", [{"role": "user", "content": "x"}])], progress=lines
        )
    assert isinstance(failure, MinimaLlmFailure) and failure.status == 401
    assert failure.body_snippet is not None and "***" in failure.body_snippet
    assert "Failure 1: r" in lines.getvalue()
    leak_free(failure, failure.body_snippet, failure.message, lines.getvalue())
    assert SECRET.encode() not in pickle.dumps(failure)
    for f in tmp_path.iterdir():  # noqa: ASYNC240 - a test reading its own tmp files
        assert SECRET.encode() not in f.read_bytes()


async def test_no_log_line_carries_the_key(
    make_backend: Callable[..., OpenAIMinimaLlm], caplog: pytest.LogCaptureFixture
) -> None:
    """Every logger at DEBUG (the HTTP stack's included), progress sent to a logger."""
    caplog.set_level(logging.DEBUG)
    progress = logging.getLogger("minimallm.test.progress")
    reqs = [
        MinimaLlmRequest(f"r{i}", [{"role": "user", "content": c}])
        for i, c in enumerate(["#mock:fault=401", "hello", "#mock:fault=500*9"])
    ]
    async with make_backend(max_attempts=2, batch=BatchConfig(heartbeat_s=0.01)) as backend:
        await backend.run_batched(reqs, progress=progress)
    assert any(r.getMessage().startswith("Failure 1:") for r in caplog.records)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
        assert SECRET not in repr(record.args)
