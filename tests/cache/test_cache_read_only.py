"""A cache directory this process may not write is still read (issue 19).

The condition is real, not simulated: the directory and its database are made
read-only (``chmod a-w``), and the second run happens in a forked child. Root ignores
file permissions, so when the tests run as root the child first drops to user
``nobody`` (65534); the modules it needs were imported by the first run, before the
fork, so it needs nothing from directories only root may read.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from minimallm import (
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._errors import CacheWarning
from minimallm.mock import MockServerThread

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

N = 500


@pytest.fixture
def shared_dir() -> Iterator[Path]:
    """A directory anyone may read (pytest's tmp_path is root's alone)."""
    with tempfile.TemporaryDirectory(prefix="minimallm-ro-") as name:
        os.chmod(name, 0o755)
        yield Path(name)


def _run(url: str, cache_dir: Path) -> tuple[list[MinimaLlmResponse | object], list[str]]:
    cfg = MinimaLlmConfig(
        base_url=url,
        model="m",
        rpm=0,
        max_outstanding=8,
        cache_dir=str(cache_dir),
        batch=BatchConfig(num_workers=8, heartbeat_s=0),
    )
    reqs = [MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"p{i}"}]) for i in range(N)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        backend = OpenAIMinimaLlm(cfg)
        try:
            results: list[MinimaLlmResponse | object] = list(
                backend.run_batched_sync(reqs, progress=lambda line: None)
            )
        finally:
            backend.close_sync()
    return results, [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]


def _in_child_without_write_access(fn: object, url: str, cache_dir: Path) -> dict[str, object]:
    """Run ``fn(url, cache_dir)`` in a forked child that may not write ``cache_dir``."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        code = 0
        try:
            os.close(read_fd)
            if os.geteuid() == 0:
                os.setgroups([])
                os.setgid(65534)
                os.setuid(65534)
            results, warned = fn(url, cache_dir)  # type: ignore[operator]
            report = {
                "answers": sum(isinstance(r, MinimaLlmResponse) for r in results),
                "cached": sum(isinstance(r, MinimaLlmResponse) and r.cached for r in results),
                "warnings": warned,
            }
        except BaseException as exc:  # report it: the parent asserts
            report = {"error": f"{type(exc).__name__}: {exc}"}
            code = 1
        with os.fdopen(write_fd, "w") as out:
            out.write(json.dumps(report))
        os._exit(code)
    os.close(write_fd)
    with os.fdopen(read_fd) as inp:
        text = inp.read()
    os.waitpid(pid, 0)
    return dict(json.loads(text))


def test_read_only_cache_dir_serves_every_hit(
    shared_dir: Path, mock_server: MockServerThread
) -> None:
    cache_dir = shared_dir / "cache"
    first, _ = _run(mock_server.base_url, cache_dir)  # populates (and imports everything)
    assert sum(isinstance(r, MinimaLlmResponse) for r in first) == N
    assert sorted(os.listdir(cache_dir)) == ["minima_llm.db"]  # closed cleanly: no -wal
    read_only = stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH
    os.chmod(cache_dir / "minima_llm.db", read_only)
    os.chmod(cache_dir, read_only | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    sent_before = mock_server.stats.requests_total
    try:
        report = _in_child_without_write_access(_run, mock_server.base_url, cache_dir)
    finally:
        os.chmod(cache_dir, 0o755)
    assert report.get("error") is None, report
    assert report["answers"] == N
    assert report["cached"] == N  # before the fix: 0 of 500
    assert mock_server.stats.requests_total == sent_before
    warned = report["warnings"]
    assert isinstance(warned, list) and len(warned) == 1, warned
    assert str(cache_dir) in warned[0] and "read-only" in warned[0]
    assert sorted(os.listdir(cache_dir)) == ["minima_llm.db"]  # nothing made there
