"""``minimallm run-batch`` on a large file: peak memory and whether the output streams.

    python benchmarks/bench_run_batch.py                # 1,000,000 lines (~3 min)
    python benchmarks/bench_run_batch.py --n 100000     # a quicker look
    python benchmarks/bench_run_batch.py --n 2000 --max-rss-mb 150   # CI-sized smoke

Generates N Batch API lines (a system and a user message, ~300 bytes each), starts the
mock server in its own process (latency 0, no faults), then runs ``python -m minimallm
run-batch`` as a child process (no cache, progress off, 64 in flight, RPM off) and
watches it from outside:

* **peak RSS** of the run-batch process: ``ru_maxrss`` from ``os.wait4`` (the kernel's
  figure for that one child, whole life), and RSS sampled every 0.05 s with psutil when
  it is installed (the largest sample, and the RSS at the first request and the end);
* **time to first request** (pass 1 reads and checks the whole file before anything
  is sent) and **time to first line** on disk, from the start of the process;
* **wall time**, and **lines/s** over the sending part (first request to exit).

Exit status 1 if the output does not have N lines or the peak RSS is above
``--max-rss-mb`` (default 150, issue 11's budget).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from minimallm.mock import MockServerConfig, MockServerProcess

SYSTEM = "You grade passages for relevance to a query, from 0 (unrelated) to 3 (on topic)."


def generate(path: Path, n: int) -> None:
    """N Batch API lines; every prompt distinct."""
    with path.open("w") as f:
        for i in range(n):
            body = {
                "model": "mock-model",
                "messages": [
                    {"role": "system", "content": SYSTEM},
                    {"role": "user", "content": f"Query {i}: tides. Passage: the moon pulls."},
                ],
                "temperature": 0.0,
                "max_tokens": 32,
            }
            row = {"custom_id": f"req-{i}", "method": "POST", "url": "/v1/chat/completions"}
            f.write(json.dumps({**row, "body": body}) + "\n")


def _rss_sampler() -> Any:
    try:
        import psutil
    except ImportError:  # the `bench` extra brings it; ru_maxrss is reported anyway
        return None
    return psutil


def measure(work: Path, n: int, concurrency: int, base_url: str, server: Any) -> dict[str, Any]:
    """Run run-batch once on ``work/in.jsonl``; what was seen from outside."""
    out = work / "out.jsonl"
    argv = [
        sys.executable, "-m", "minimallm", "run-batch", str(work / "in.jsonl"), "-o", str(out),
        "--overwrite", "--base-url", base_url, "--rpm", "0", "--no-cache",
        "--workers", str(concurrency), "--max-outstanding", str(concurrency),
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCH_"))}
    env["MINIMALLM_PROGRESS"] = "off"
    psutil = _rss_sampler()
    samples: list[float] = []
    timeline: list[tuple[float, float]] = []  # (seconds, MiB) every ~5 s
    first_request = first_line = None
    rss_at_first_request = None
    log = work / "stderr.log"
    start = time.perf_counter()
    with log.open("wb") as err:
        proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=err)
    watched = psutil.Process(proc.pid) if psutil else None
    while True:
        # wait4, not Popen.poll: the kernel's peak RSS of this child comes with its status
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        now = time.perf_counter() - start
        if watched is not None:
            with contextlib.suppress(psutil.Error):  # it may have just exited
                samples.append(watched.memory_info().rss / 2**20)
                if not timeline or now - timeline[-1][0] >= 5.0:
                    timeline.append((round(now, 1), round(samples[-1], 1)))
        if first_request is None and server.stats.requests_total > 0:
            first_request = now
            rss_at_first_request = samples[-1] if samples else None
        if first_line is None and out.exists() and out.stat().st_size > 0:
            first_line = now
        time.sleep(0.05)  # a benchmark's sampling period
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = log.read_text()
    with out.open("rb") as f:
        lines = sum(1 for _ in f)
    sending = wall - (first_request or 0.0)
    return {
        "n": n,
        "returncode": proc.returncode,
        "lines": lines,
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "sampled_peak_rss_mb": round(max(samples), 1) if samples else None,
        "rss_at_first_request_mb": None
        if rss_at_first_request is None
        else round(rss_at_first_request, 1),
        "rss_at_end_mb": round(samples[-1], 1) if samples else None,
        "first_request_s": None if first_request is None else round(first_request, 2),
        "first_line_s": None if first_line is None else round(first_line, 2),
        "wall_s": round(wall, 1),
        "lines_per_s": round(n / sending) if sending > 0 else None,
        "rss_timeline": timeline,
        "stderr_tail": stderr.strip().splitlines()[-2:],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="lines (default %(default)s)")
    parser.add_argument("--concurrency", type=int, default=64, help="workers = MAX_OUTSTANDING")
    parser.add_argument("--max-rss-mb", type=float, default=150.0, help="the budget (MiB)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-run-batch-") as tmp:
        work = Path(tmp)
        generate(work / "in.jsonl", args.n)
        size_mb = (work / "in.jsonl").stat().st_size / 1e6
        load = os.getloadavg()[0]
        with MockServerProcess(MockServerConfig(latency_s=0.0, max_records=0)) as server:
            result = measure(work, args.n, args.concurrency, server.base_url, server)
        result["input_mb"] = round(size_mb, 1)
        result["load_before_after"] = [round(load, 1), round(os.getloadavg()[0], 1)]
    print(
        f"{args.n:,} lines ({result['input_mb']} MB), {args.concurrency} in flight, latency 0, "
        f"load {result['load_before_after'][0]} -> {result['load_before_after'][1]} on "
        f"{os.cpu_count()} cores\n"
    )
    print("| peak RSS (ru_maxrss) | sampled peak | RSS at first request | RSS at end | "
          "first request | first line | wall | lines/s (sending) |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")

    def mb(value: float | None) -> str:
        return "—" if value is None else f"{value} MiB"

    def s(value: float | None) -> str:
        return "—" if value is None else f"{value} s"

    print(
        f"| **{mb(result['peak_rss_mb'])}** | {mb(result['sampled_peak_rss_mb'])} | "
        f"{mb(result['rss_at_first_request_mb'])} | {mb(result['rss_at_end_mb'])} | "
        f"{s(result['first_request_s'])} | {s(result['first_line_s'])} | {s(result['wall_s'])} "
        f"| {result['lines_per_s']:,} |"
    )
    if result["rss_timeline"]:
        shown = ", ".join(f"{t:.0f} s: {m:.0f}" for t, m in result["rss_timeline"])
        print(f"\nRSS (MiB) over time: {shown}")
    for line in result["stderr_tail"]:
        print(f"\n    {line}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    ok = result["lines"] == args.n and result["peak_rss_mb"] <= args.max_rss_mb
    if result["lines"] != args.n:
        print(f"\nFAILED: {result['lines']} lines in the output, expected {args.n}")
    if result["peak_rss_mb"] > args.max_rss_mb:
        print(f"\nOVER BUDGET: peak RSS {result['peak_rss_mb']} MiB > {args.max_rss_mb} MiB")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
