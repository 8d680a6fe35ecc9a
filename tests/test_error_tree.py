"""One exception tree rooted in MinimaLlmError, and every field holds what it says."""

from __future__ import annotations

import random
import subprocess
import sys

import pytest

from fakes import FakeServer, Script
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmError,
    MinimaLlmFailure,
    MinimaLlmRequest,
    OpenAIMinimaLlm,
    _errors,
)
from minimallm._runtime.serve import RuntimeOptions


def test_every_error_is_in_the_tree_and_drawn_in_its_docstring() -> None:
    doc = _errors.__doc__ or ""
    for name in _errors.__all__:
        cls = getattr(_errors, name)
        assert name in doc, f"{name} is missing from the tree in _errors' docstring"
        if not issubclass(cls, Warning):
            assert issubclass(cls, MinimaLlmError), name


def test_dspy_batch_error_is_a_minimallm_error_and_a_runtime_error() -> None:
    pytest.importorskip("dspy", reason="needs the [dspy] extra")
    from minimallm.dspy import DSPyBatchError

    assert issubclass(DSPyBatchError, MinimaLlmError)
    assert issubclass(DSPyBatchError, RuntimeError)
    assert DSPyBatchError is _errors.DSPyBatchError


def test_the_tree_does_not_import_dspy() -> None:
    code = "import minimallm._errors, sys; print('dspy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


async def test_batch_aborted_error_carries_the_last_failures_it_lists() -> None:
    # each item refused for its own reason: failures of single items, not all alike
    server = FakeServer(
        lambda content, n: Script(status=400, body=b'{"error": "nope %s"}' % content.encode())
    )
    cfg = MinimaLlmConfig(
        base_url="http://fake.invalid",
        model="m",
        rpm=0,
        batch=BatchConfig(heartbeat_s=0, num_workers=1, max_failures=4, keep_failure_summaries=3),
    )
    reqs = [MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"q{i}"}]) for i in range(20)]
    async with OpenAIMinimaLlm(
        cfg, options=RuntimeOptions(server.transport, random.Random(0))
    ) as backend:
        with pytest.raises(BatchAbortedError) as info:
            await backend.run_batched(reqs, progress=lambda line: None)
    failures = info.value.failures
    assert [f.request_id for f in failures] == ["id2", "id3", "id4"]  # the last 3 of 5
    assert all(isinstance(f, MinimaLlmFailure) and f.status == 400 for f in failures)
    for f in failures:
        assert f"{f.request_id}: HTTPError status=400" in str(info.value)
