"""Memory of run-batch: the benchmark script runs (tiny N), and a leak it found.

``FlowWatch`` keeps the times of the last second's successes (its delivered rate); it
used to keep every one in a healthy run, ~32 bytes per request (an overnight run of
10^7: ~320 MB), found by ``benchmarks/bench_run_batch.py`` (issue 11, acceptance 2):
peak RSS of 1,000,000 lines through run-batch at latency 0 went 92 -> 67 MiB with the fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

from minimallm._policy import OverloadSignal
from minimallm._policy.flow import FlowWatch


def test_a_healthy_run_keeps_about_one_second_of_success_times() -> None:
    sig = OverloadSignal()
    watch = FlowWatch(sig)
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(100_000):  # 1,000 successes per second for 100 s
            now = i / 1000
            sig.observe(now, now - 0.01, False)
            watch.observe(now, now - 0.01, "ok", 64)
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before < 200_000  # one second's worth is ~32 KB; today ~3.2 MB
    assert watch.delivered_per_s(99.999) == 1000.0


def test_the_run_batch_benchmark_runs(tmp_path: Path) -> None:
    """``benchmarks/bench_run_batch.py`` at a tiny N (the real run takes minutes)."""
    out = tmp_path / "bench.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_run_batch.py"
    done = subprocess.run(
        [sys.executable, str(script), "--n", "2000", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    result = json.loads(out.read_text())
    assert result["lines"] == 2000 and result["returncode"] == 0
    assert 0 < result["peak_rss_mb"] < 150
    assert result["first_request_s"] is not None and result["first_line_s"] is not None
    assert "| **" in done.stdout  # the table row
