"""The original document's DSPy example (examples/reference_dspy_batch.py: verbatim but
for its import line) runs against `minimallm mock --dspy` started as a process, with the
endpoint in the environment, as a user would run it."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("dspy", reason="needs the [dspy] extra")

from minimallm.mock.cli import ANNOUNCE_PREFIX

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "reference_dspy_batch.py"


@pytest.fixture(scope="module")
def dspy_mock() -> Iterator[str]:
    """`minimallm mock --dspy --port 0` in a child process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "minimallm", "mock", "--dspy", "--port", "0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(30), "the mock did not announce itself within 30 s"
        line = proc.stdout.readline()
        assert line.startswith(ANNOUNCE_PREFIX), line
        yield line.removeprefix(ANNOUNCE_PREFIX).strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0  # a clean shutdown on SIGTERM
        if proc.stdout is not None:
            proc.stdout.close()


def test_only_the_import_line_names_minimallm() -> None:
    code = [line for line in EXAMPLE.read_text().splitlines() if line and not line.startswith("#")]
    imports = [line for line in code if "minimallm" in line]
    assert imports == ["from minimallm import run_dspy_batch"]
    assert "trec_auto_judge" not in EXAMPLE.read_text().split("# fmt: off", 1)[1]


def test_reference_dspy_example_runs_against_the_dspy_mock(dspy_mock: str) -> None:
    env = {
        **os.environ,
        "OPENAI_BASE_URL": dspy_mock,
        "OPENAI_MODEL": "mock-model",
    }
    for name in ("OPENAI_API_KEY", "OPENAI_TOKEN", "CACHE_DIR"):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0::2] == ["Q: What is 2+2?", "Q: What is Paris?"]
    for answer in lines[1::2]:  # DSPy parsed the mock's DSPy-format answers into the fields
        assert re.fullmatch(r"A: mock answer \d{4} \(confidence: [01]\.\d+\)", answer), answer
    assert "[minimallm] finished 2/2" in proc.stderr
