"""Memory of ``run-batch --provider-batch`` (issue 18, acceptance 4): 120,000 lines go up
in three files (at most 50,000 lines each) and come back through the state file, the
chunk files and the downloaded files, all streamed: the peak RSS of the run is about
that of a run of 12,000 lines (one file), not ten times the lines' worth.

The child reports its own peak (``VmHWM`` of ``/proc/self/status`` at exit: ``ru_maxrss``
of a child would carry the parent's peak across ``exec``).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minimallm.mock import MockServerConfig, MockServerProcess

_CHILD = """
import sys
from minimallm.cli import main
code = main(sys.argv[1:])
status = open("/proc/self/status").read()
peak = next(line for line in status.splitlines() if line.startswith("VmHWM:"))
print(int(peak.split()[1]) // 1024, file=sys.stdout)
sys.exit(code)
"""


def _input(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            text = f"passage {i}: " + "is this passage about the tides of the sea? " * 3
            f.write(json.dumps({"custom_id": f"q{i}", "messages": [{"role": "user", "content": text}]}))  # fmt: skip  # noqa: E501
            f.write("\n")
    return path


def _peak_mb(tmp: Path, mock: MockServerProcess, n: int) -> int:
    inp = _input(tmp / f"in{n}.jsonl", n)
    out = tmp / f"out{n}.jsonl"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCH_"))}
    env["MINIMALLM_PROGRESS"] = "off"
    argv = [
        sys.executable, "-c", _CHILD, "run-batch", str(inp), "-o", str(out),
        "--base-url", mock.base_url, "--model", "mock-model", "--no-cache",
        "--provider-batch", "--poll-min", "0.2", "--poll-max", "0.5",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert sum(1 for _ in out.open("rb")) == n
    return int(done.stdout.split()[-1])


@pytest.mark.slow
def test_120000_lines_in_three_files_keep_the_peak_rss_flat(tmp_path: Path) -> None:
    config = MockServerConfig(deterministic=True, batch_duration_s=1.0, max_records=0)
    with MockServerProcess(config) as mock:
        small = _peak_mb(tmp_path, mock, 12_000)
        big = _peak_mb(tmp_path, mock, 120_000)
        conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=10)
        conn.request("GET", "/mock/batches")
        counts = json.loads(conn.getresponse().read())
        conn.close()
    assert counts["uploads"] == 1 + 3 and counts["upload_lines"] == 132_000, counts
    print(f"peak RSS: 12,000 lines {small} MiB, 120,000 lines {big} MiB")
    assert big <= small + 12, (small, big)
