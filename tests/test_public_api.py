"""The public face of ``minimallm``: an explicit, sorted ``__all__`` and the DSPy names
resolved lazily (SPEC §1), without importing DSPy on ``import minimallm``."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

import minimallm

LAZY = ("MinimaLlmDSPyLM", "run_dspy_batch")
HAS_DSPY = importlib.util.find_spec("dspy") is not None


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )


def test_all_is_explicit_sorted_and_importable() -> None:
    assert minimallm.__all__ == sorted(minimallm.__all__)
    for name in minimallm.__all__:
        assert hasattr(minimallm, name), name
    # not in __all__: `from minimallm import *` must work without DSPy installed
    assert not set(LAZY) & set(minimallm.__all__)


@pytest.mark.skipif(not HAS_DSPY, reason="needs the [dspy] extra")
def test_dir_lists_the_lazy_dspy_names() -> None:
    names = dir(minimallm)
    assert set(LAZY) <= set(names)
    assert set(minimallm.__all__) <= set(names)


def test_dir_shows_only_public_names() -> None:
    names = set(dir(minimallm))
    assert set(minimallm.__all__) <= names
    assert not names & {"Any", "TYPE_CHECKING", "actors", "cli", "mock", "dspy"}


def test_help_and_getmembers_work_without_dspy() -> None:
    result = run_python(
        "import sys; sys.modules['dspy'] = None  # as if DSPy were not installed\n"
        "import inspect, io, contextlib, minimallm\n"
        "assert 'MinimaLlmDSPyLM' not in dir(minimallm)\n"
        "members = dict(inspect.getmembers(minimallm))\n"
        "assert members['OpenAIMinimaLlm'] is minimallm.OpenAIMinimaLlm\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        "    help(minimallm)\n"
        "assert 'OpenAIMinimaLlm' in buf.getvalue()\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_unknown_attribute_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'run_dspy_batchh'"):
        _ = minimallm.run_dspy_batchh  # type: ignore[attr-defined]


@pytest.mark.skipif(not HAS_DSPY, reason="needs the [dspy] extra")
def test_reference_import_line_resolves_lazily() -> None:
    result = run_python(
        "import sys\n"
        "import minimallm\n"
        "assert 'dspy' not in sys.modules, 'import minimallm imported dspy'\n"
        "from minimallm import run_dspy_batch, MinimaLlmDSPyLM\n"
        "assert 'dspy' in sys.modules\n"
        "import minimallm.dspy as d\n"
        "assert run_dspy_batch is d.run_dspy_batch and MinimaLlmDSPyLM is d.MinimaLlmDSPyLM\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_without_dspy_the_lazy_names_say_which_extra_to_install() -> None:
    result = run_python(
        "import sys; sys.modules['dspy'] = None  # as if DSPy were not installed\n"
        "from minimallm import *\n"
        "import minimallm\n"
        "try:\n"
        "    from minimallm import run_dspy_batch\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'minimallm[dspy]'" in result.stdout
