"""``import minimallm`` stays light: what only an optional feature needs (the prompt
cache's SQLite store, did-you-mean suggestions, …) is imported when that feature is
used, not on import and not by a run that does not use it. Each check runs in a fresh
interpreter, where other tests' imports cannot mask a regression."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# Modules a batch without CACHE_DIR never needs: each is imported by the feature that
# uses it (the prompt cache).
NOT_ON_THE_DEFAULT_PATH = ("sqlite3", "minimallm._cache.store", "minimallm.actors.cache_writer")
# Nor these, on import: did-you-mean suggestions (for a setting that is not one) and
# gzip (bodies are compressed with zlib; minimallm.testing, used below, imports gzip).
NOT_ON_IMPORT = ("difflib", "gzip")

_RUN = """
import sys
import minimallm
assert not [m for m in NOT + NOT_ON_IMPORT if m in sys.modules], "on import"
from minimallm import MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm
from minimallm.testing import MockTransport

def handler(request):
    return {"choices": [{"message": {"role": "assistant", "content": "ok"}}]}

backend = OpenAIMinimaLlm(
    MinimaLlmConfig(base_url="http://test/v1", model="m"), transport=MockTransport(handler)
)
requests = [MinimaLlmRequest(f"q{i}", [{"role": "user", "content": str(i)}]) for i in range(3)]
results = backend.run_batched_sync(requests)
assert [r.text for r in results] == ["ok"] * 3, results
print(sorted(m for m in NOT + ("difflib",) if m in sys.modules))
"""


def _python(code: str) -> str:
    names = f"NOT = {NOT_ON_THE_DEFAULT_PATH!r}\nNOT_ON_IMPORT = {NOT_ON_IMPORT!r}\n"
    done = subprocess.run(
        [sys.executable, "-c", names + code],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_run_without_a_cache_never_imports_the_cache() -> None:
    assert _python(_RUN) == "[]\n"


def test_the_cache_is_imported_when_one_is_used(tmp_path: Path) -> None:
    """The same run with CACHE_DIR set imports the cache (so the check above can fail)."""
    code = _RUN.replace('model="m")', f'model="m", cache_dir={str(tmp_path)!r})')
    assert _python(code) == f"{sorted(NOT_ON_THE_DEFAULT_PATH)}\n"
