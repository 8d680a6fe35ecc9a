"""The benchmark harness runs end to end (tiny N) and its summary maths is right.

The full benchmarks take minutes; these only prove that every row of
``bench_generate.py`` completes its requests against a mock server process with exactly
one HTTP request per call, that ``bench_cache.py``'s rerun is answered entirely from the
cache by a new process, that ``bench_batch_memory.py`` sees no task or coroutine per
request, that ``python -m benchmarks --quick`` runs a healthy family and a family with
an outage end to end and writes its tables, plot and summary; and that the reported
numbers (windows, rates, recovery times) are computed right.
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

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
N = 100
CONCURRENCY = 8
ROWS = ["minimallm-trio", "minimallm-asyncio", "minimallm-batched", "aiohttp-asyncio", "httpx-trio"]
if importlib.util.find_spec("aiohttp") is None:  # only in the `bench` extra
    ROWS.remove("aiohttp-asyncio")


@pytest.fixture
def harness(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    """``benchmarks._harness``, with the repository root importable."""
    monkeypatch.syspath_prepend(str(ROOT))
    from benchmarks import _harness

    yield _harness


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
    from benchmarks import bench_cache

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


# --- python -m benchmarks -------------------------------------------------------------


def test_families_quick_run_writes_tables_plots_and_summary(
    tmp_path: Path, harness: ModuleType
) -> None:
    """A healthy family (every installed row) and one whose server refuses connections
    for a second mid-batch, end to end in a few seconds."""
    out = tmp_path / "results"
    args = ["--quick", "--family", "latency-bound", "--family", "outage", "--quiet"]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    from benchmarks.clients import missing
    from benchmarks.scenarios import HEALTHY_ROWS, PUSHBACK_ROWS, families

    data = json.loads((out / "results.json").read_text())
    quick = families(quick=True)
    healthy = [r for r in HEALTHY_ROWS if not missing(r)]
    rows = data["latency-bound"]["rows"]
    assert [r["client"] for r in rows] == healthy
    n, warmup = quick["latency-bound"].n, quick["latency-bound"].settings.concurrency
    for row in rows:
        assert row["failures"] == 0, row
        (run,) = row["runs"]
        assert run["server_requests"] == n + warmup, row  # one HTTP request per call
    outage = {c: runs for c, runs in data["outage"].items() if c not in ("wall_s", "notes")}
    assert list(outage) == [r for r in PUSHBACK_ROWS if not missing(r)]
    for client, (run,) in outage.items():
        assert run["error"] is None, (client, run)
        # The outage hit the batch while it ran: open connections were reset.
        assert run["phases"]["outage"]["connections_reset"] >= 1, (client, run)
        assert run["timed_out"] or run["ok"] + run["failed"] == quick["outage"].n
    summary = (out / "summary.md").read_text()
    for family in ("latency-bound", "outage"):
        assert (out / f"{family}.md").read_text().startswith(f"### {quick[family].title}")
        assert quick[family].title in summary
        if importlib.util.find_spec("matplotlib") is not None:
            assert (out / f"{family}.png").read_bytes()[:4] == b"\x89PNG"
            assert f"![{quick[family].title}](./{family}.png)" in summary
    assert "- CPU: " in summary and "| minimallm-batched |" in summary


def test_an_nginx_family_runs_end_to_end_through_real_nginx(
    tmp_path: Path, harness: ModuleType
) -> None:
    """nginx proxies to the mock, whose listener closes for a second mid-batch: nginx
    answers 502s meanwhile, its access log is read back, every row finishes."""
    from benchmarks._nginx import nginx_binary

    if nginx_binary() is None:
        pytest.skip("nginx is not installed (Debian: apt-get install nginx)")
    out = tmp_path / "results"
    args = ["--quick", "--family", "nginx-down-10", "--quiet", "--out", str(out)]
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:] + proc.stdout[-2000:]
    from benchmarks.clients import missing
    from benchmarks.scenarios import PUSHBACK_ROWS

    data = json.loads((out / "results.json").read_text())["nginx-down-10"]
    runs = {c: r for c, r in data.items() if c not in ("wall_s", "notes")}
    assert list(runs) == [r for r in PUSHBACK_ROWS if not missing(r)]
    for client, (run,) in runs.items():
        assert run["error"] is None, (client, run)
        statuses = {status for _, status in run["gateway"]}
        assert 200 in statuses and 502 in statuses, (client, sorted(statuses))
    assert (
        "| client | wall s | ok | failures | 502/504s |" in (out / "nginx-down-10.md").read_text()
    )


def test_every_family_has_a_runner_and_the_sizes_the_issues_ask_for(harness: ModuleType) -> None:
    from benchmarks.__main__ import RUNNERS
    from benchmarks.scenarios import FAMILY_NAMES, families

    full = families()
    assert set(RUNNERS) == set(FAMILY_NAMES) == set(full)
    from benchmarks.scenarios import DEFAULT_FAMILY_NAMES, GATEWAY_FAMILY_NAMES

    # the default run leaves out the gateway families (~30 min), and only those
    assert set(DEFAULT_FAMILY_NAMES) | set(GATEWAY_FAMILY_NAMES) == set(FAMILY_NAMES)
    assert not set(DEFAULT_FAMILY_NAMES) & set(GATEWAY_FAMILY_NAMES)
    assert {"rate-limited", "capacity", "faults", "outage", "storm"} <= set(DEFAULT_FAMILY_NAMES)
    rl = full["rate-limited"]
    assert (rl.n, rl.settings.concurrency, rl.server.rate_limit_per_s, rl.server.burst) == (
        4000, 128, 200.0, 20,
    )  # fmt: skip
    cap = full["capacity"]
    assert (cap.n, cap.settings.concurrency, cap.server.capacity) == (3000, 64, 32)
    assert (cap.server.latency_dist, cap.server.retry_after_s) == ("lognormal", 1.0)
    fl = full["faults"]
    assert (fl.n, fl.settings.timeout_s, fl.rounds) == (3000, 2.0, 3)
    assert dict(fl.server.fault_rates) == {
        "500": 0.03, "503": 0.02, "reset": 0.01, "hang": 0.01, "malformed": 0.01,
    }  # fmt: skip
    assert [p.duration_s for p in full["outage"].server.phases] == [20.0]
    (storm,) = full["storm"].server.phases
    assert (storm.kind, storm.duration_s, getattr(storm, "status", None)) == ("storm", 30.0, 429)
    pacing = full["pacing"]
    assert (pacing.n, pacing.settings.rpm, pacing.server.latency_s) == (1000, 3000, 0.05)
    assert (full["cached"].n, full["memory"].n) == (20_000, 100_000)
    for name in ("bucket-retry-after", "bucket-bare"):
        b = full[name]
        assert (b.n, b.settings.concurrency, b.server.rate_limit_per_s, b.server.burst) == (
            4000, 128, 200.0, 20,
        )  # fmt: skip
    assert full["bucket-retry-after"].server.retry_after_only
    assert not full["bucket-bare"].server.rate_headers
    assert (full["nginx-limit-req"].gateway, full["nginx-limit-conn"].gateway) == (
        "limit_req", "limit_conn",
    )  # fmt: skip
    assert [p.duration_s for p in full["nginx-down-10"].server.phases] == [10.0]
    assert [p.duration_s for p in full["nginx-down-40"].server.phases] == [40.0]
    assert dict(full["random-429"].server.fault_rates) == {"429": 0.5}
    assert full["quota"].server.error_code == "insufficient_quota"


# --- the figures ------------------------------------------------------------------------


def test_windows_rates_and_recovery(harness: ModuleType) -> None:
    from benchmarks.metrics import achieved_rate, max_in_window, rate_series, recovery_s

    times = [0.0, 0.1, 0.2, 1.05, 1.1, 3.0]
    assert max_in_window(times, 1.0) == 3
    assert max_in_window(times, 0.11) == 2
    assert max_in_window([], 1.0) == 0
    assert achieved_rate([0.0, 0.5, 1.0]) == pytest.approx(2.0)
    assert achieved_rate([1.0]) is None
    assert rate_series(times, start=0.0, end=2.0, bin_s=1.0) == [(0.0, 3.0), (1.0, 2.0)]
    # 10/s before a pause from 2 s to 4 s, then 5/s, then 10/s from 6 s on.
    steady = [i / 10 for i in range(20)]
    slow = [4 + i / 5 for i in range(10)]
    fast = [6 + i / 10 for i in range(30)]
    seconds, baseline = recovery_s(steady + slow + fast, before=(0.0, 2.0), after=4.0)
    assert baseline == pytest.approx(10.0)
    # [5.75, 6.75) is the first window (in 0.05 s steps) holding 9: 5.8 and 6.0 .. 6.7.
    assert seconds == pytest.approx(1.75)
    never, _ = recovery_s(steady + slow, before=(0.0, 2.0), after=4.0)
    assert never is None


def test_readme_section_is_replaced_between_markers(tmp_path: Path, harness: ModuleType) -> None:
    from benchmarks.report import README_END, README_START, update_readme

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\nbefore\n{README_START}\nold\n{README_END}\nafter\n")
    image = tmp_path / "storm.png"
    image.write_bytes(b"\x89PNG")
    update_readme(readme, "## Benchmarks\n\n![s](docs/storm.png)", [image], tmp_path / "docs")
    assert readme.read_text() == (
        f"# x\n\nbefore\n{README_START}\n## Benchmarks\n\n![s](docs/storm.png)\n"
        f"{README_END}\nafter\n"
    )
    assert (tmp_path / "docs" / "storm.png").read_bytes() == b"\x89PNG"
    readme.write_text("# no markers\n")
    with pytest.raises(ValueError, match="bench:start"):
        update_readme(readme, "x", [], tmp_path / "docs")
    assert readme.read_text() == "# no markers\n"


def test_the_readme_gets_the_overview_the_main_plots_and_a_link_to_the_rest(
    tmp_path: Path, harness: ModuleType
) -> None:
    from benchmarks.report import FamilyResult, readme_markdown, update_readme

    results = [
        FamilyResult(
            "storm", "429 storm", "recovery", "| t |", image="storm.png",
            headline=("seconds", {"minimallm-batched": "4.0", "aiohttp-retry": "0.1"}),
        ),
        FamilyResult("pacing", "Pacing", "rate", "| t |", image="pacing.png"),
    ]  # fmt: skip
    body = readme_markdown(
        results, machine=["- CPU: x"], wall_s=300, command="python -m benchmarks",
        image_dir="docs/benchmarks",
    )  # fmt: skip
    assert "[docs/benchmarks/summary.md](docs/benchmarks/summary.md)" in body
    assert "| 429 storm | seconds | 4.0 | 0.1 |" in body  # minimallm next to the peers
    assert "![429 storm](docs/benchmarks/storm.png)" in body
    assert "pacing.png" not in body  # in the full summary only
    readme = tmp_path / "README.md"
    readme.write_text("<!-- bench:start -->\n<!-- bench:end -->\n")
    update_readme(readme, body, [], tmp_path / "docs", summary="full tables")
    assert (tmp_path / "docs" / "summary.md").read_text() == "full tables"


def test_core_bench_runs_every_part_as_whole_processes(tmp_path: Path) -> None:
    """``bench_core.py --quick``: each client's user script in its own process, every
    request answered with one HTTP request, the CPU and RSS figures and ratios printed."""
    out = tmp_path / "core.json"
    proc = _bench("bench_core.py", ["--quick", "--quiet", "--json", str(out)])
    data = json.loads(out.read_text())
    assert set(data) == {"cpu", "rss", "rpm"}
    sizes = {(r["client"], r["n"]) for r in data["cpu"]}
    assert sizes == {(c, n) for c in ("minimallm", "aiohttp") for n in (300, 100, 400)}
    assert [r["client"] for r in data["rss"]] == ["minimallm", "aiohttp", "aiohttp-pool"]
    assert [(r["n"], r["rpm"]) for r in data["rpm"]] == [
        (300, 6_000_000), (300, 0), (5, 600), (5, 0),
    ]  # fmt: skip
    for run in (r for runs in data.values() for r in runs):
        assert run["ok"] and run["server_requests"] == run["n"] == run["texts"], run
        assert 0 < run["cpu_s"] < 60 and 10_000 < run["vmhwm_kib"] < 2_000_000, run
    # RPM 600 spaces the 5 sends 0.1 s apart: the run took at least 0.4 s longer
    assert data["rpm"][2]["wall_s"] > 0.4
    assert "minimallm" in proc.stdout and "÷ aiohttp" in proc.stdout
    for heading in ("(a) CPU per request", "(b) peak RSS", "(c) minimallm's peak RSS by RPM"):
        assert heading in proc.stdout


def test_replicas_bench_spreads_by_capacity_and_fails_nothing() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_replicas", "--requests", "300", "--no-outage"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=BENCH.parent,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| healthy |")]
    assert [row.split("|")[2].strip() for row in rows] == ["minimallm", "round-robin aiohttp"]
    assert all(row.split("|")[6].strip() == "0" for row in rows)  # no failure
