"""The benchmark harness runs end to end (tiny N, latency 0) and its summary maths is right.

The full benchmarks take minutes; these only prove that every row of
``bench_generate.py`` completes its requests against a mock server process with exactly
one HTTP request per call, that ``bench_cache.py``'s rerun is answered entirely from the
cache by a new process, and that ``bench_batch_memory.py`` sees no task or coroutine per
request; and that the reported numbers are sane.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
N = 100
CONCURRENCY = 8
ROWS = ["minimallm-trio", "minimallm-asyncio", "minimallm-batched", "aiohttp-asyncio", "httpx-trio"]
if importlib.util.find_spec("aiohttp") is None:  # only in the `bench` extra
    ROWS.remove("aiohttp-asyncio")


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``benchmarks/_harness.py`` imported as a script sees it (top-level modules)."""
    monkeypatch.syspath_prepend(str(BENCH))
    import _harness

    yield _harness
    for name in [
        m
        for m in sys.modules
        if m in ("_harness", "bench_cache", "clients") or m.startswith("clients.")
    ]:
        del sys.modules[name]


def test_quick_run_completes_every_row(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = ["--quick", "--n", str(N), "--concurrency", str(CONCURRENCY), "--latency", "0"]
    args += ["--clients", *ROWS, "--quiet", "--json", str(out)]
    proc = subprocess.run(
        [sys.executable, str(BENCH / "bench_generate.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    rows = json.loads(out.read_text())
    assert [r["client"] for r in rows] == ROWS
    for row in rows:
        assert (row["n"], row["concurrency"], row["latency_s"]) == (N, CONCURRENCY, 0.0)
        assert row["failures"] == 0, row
        assert row["efficiency"] is None  # no ideal at latency 0
        assert 0 < row["cpu_us_per_request"] < 100_000, row
        assert 10 < row["peak_rss_mib"] < 2_000, row
        (run,) = row["runs"]
        assert (run["ok"], run["failed"], run["warmup_failed"]) == (N, 0, 0), row
        # One HTTP request per call (timed + warm-up): no retries, nothing lost.
        assert run["server_requests"] == N + CONCURRENCY, row
        assert row["rps"] == pytest.approx(N / run["wall_s"])
    for client in ROWS:
        assert f"| 0 ms | {client} |" in proc.stdout
    assert "CPU/request at 0 ms: minimallm-trio" in proc.stdout


def _run(harness: ModuleType, client: str, wall_s: float, cpu_s: float) -> Any:
    return harness.Run(
        client=client,
        ok=640,
        failed=0,
        warmup_failed=0,
        wall_s=wall_s,
        cpu_s=cpu_s,
        maxrss_kib=40 * 1024,
        server_cpu_s=0.5,
        server_requests=704,
    )


def test_medians_efficiency_and_ratios(harness: ModuleType) -> None:
    scenario = harness.Scenario(n=640, concurrency=64, latency_s=0.1, warmup=64)
    assert scenario.ideal_rps == pytest.approx(640.0)
    mine = harness.Row(
        "minimallm-trio",
        scenario,
        # 640 requests in 1.0 s, 1.25 s and 2.0 s: median 512 req/s; CPU median 0.64 s.
        tuple(
            _run(harness, "minimallm-trio", w, c)
            for w, c in [(1.0, 0.32), (1.25, 0.64), (2.0, 6.4)]
        ),
    )
    base = harness.Row(
        "aiohttp-asyncio",
        scenario,
        tuple(_run(harness, "aiohttp-asyncio", 1.0, 0.16) for _ in range(3)),
    )
    assert mine.rps == pytest.approx(512.0)
    assert mine.efficiency == pytest.approx(0.8)
    assert mine.cpu_us == pytest.approx(1000.0)
    assert base.cpu_us == pytest.approx(250.0)
    assert harness.cpu_ratio(mine, [mine, base], "aiohttp-asyncio") == pytest.approx(4.0)
    assert mine.rss_mib == pytest.approx(40.0)
    assert mine.server_busy == pytest.approx(0.4)  # 0.5 s of server CPU over 1.25 s
    lines = harness.ratio_lines([mine, base])
    assert any("= **0.800**" in line and "minimallm-trio" in line for line in lines)
    assert any("= **4.00**" in line for line in lines)
    table = harness.markdown_table([mine, base], rounds=3)
    assert "| 100 ms | minimallm-trio | 512 | 0.800 | 1000 | 4.00 | 40 | 40 % | 0 |" in table
    short = dataclasses.replace(_run(harness, "x", 1.0, 0.1), ok=630, failed=5, warmup_failed=1)
    assert harness.Row("x", scenario, (short,)).failures == 5 + 5 + 1  # failed, missing, warm-up


def _bench(script: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    return proc


def test_cache_bench_rerun_is_all_hits_and_write_rows_complete(tmp_path: Path) -> None:
    out = tmp_path / "cache.json"
    n, conc = 300, 8
    args = ["--quick", "--n", str(n), "--concurrency", str(conc), "--quiet", "--json", str(out)]
    proc = _bench("bench_cache.py", args)
    result = json.loads(out.read_text())
    rerun = result["rerun"]
    # The fill sends every request (warm-up included); a new process then answers
    # all of them from the cache without one HTTP request.
    (fill,) = rerun["fill"]["runs"]
    assert (fill["ok"], fill["server_requests"]) == (n, n + conc)
    assert rerun["cached"] == [n]
    assert rerun["http_requests"] == [0]
    assert rerun["rerun"]["failures"] == 0
    assert 0 < rerun["cpu_us_per_hit"] < 10_000
    assert rerun["hits_per_s"] == pytest.approx(rerun["rerun"]["rps"])
    write = {row["client"]: row for row in result["write"]}
    assert set(write) == {"minimallm-batched", "minimallm-batched-cache"}
    for row in write.values():
        assert row["failures"] == 0, row
        (run,) = row["runs"]
        assert run["server_requests"] == n + conc, row  # a fresh cache: every answer is new
    assert "(a) fully cached rerun" in proc.stdout
    assert "| rerun, new process |" in proc.stdout
    assert "req/s with cache ÷ without" in proc.stdout


def test_batch_memory_bench_makes_nothing_per_request_up_front(tmp_path: Path) -> None:
    out = tmp_path / "memory.json"
    n, conc = 2000, 8
    args = ["--n", str(n), "--small", "100", "--concurrency", str(conc), "--json", str(out)]
    proc = _bench("bench_batch_memory.py", args)
    small, large = json.loads(out.read_text())
    assert (small["n"], small["ok"], large["n"], large["ok"]) == (100, 100, n, n)
    for r in (small, large):
        assert r["maxrss_warm_kib"] <= r["maxrss_before_kib"] <= r["maxrss_kib"]
    # A task or coroutine per request made up front would show thousands here.
    assert 0 < large["peak_tasks"] < 10 * conc
    assert large["coroutines"] is not None
    assert 0 < large["coroutines"] < n // 4
    assert "bytes per request" in proc.stdout


def test_cache_bench_ratio_lines(harness: ModuleType) -> None:
    import bench_cache

    scenario = harness.Scenario(n=640, concurrency=64, latency_s=0.0, warmup=64)
    plain = harness.Row(
        "minimallm-batched", scenario, (_run(harness, "minimallm-batched", 1.0, 0.32),)
    )
    cached = harness.Row(
        "minimallm-batched-cache",
        scenario,
        (_run(harness, "minimallm-batched-cache", 1.25, 0.48),),
    )
    lines = bench_cache.write_lines([plain, cached])
    assert "512 / 640 = **0.800**" in lines[0]  # req/s with ÷ without
    assert "750 / 500 = **1.500**" in lines[1]  # CPU µs/req with ÷ without
    assert "≈ 250 µs per answer written" in lines[1]
