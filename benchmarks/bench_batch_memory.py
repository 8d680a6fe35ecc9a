"""Peak RSS of a large ``run_batched`` batch against the mock server (latency 0, no cache).

    python benchmarks/bench_batch_memory.py                 # 100,000 and 1,000 requests
    python benchmarks/bench_batch_memory.py --n 20000 --small 500

Each batch runs in its own child process (``_child.py``, the ``minimallm-batched``
row): it opens the backend, sends a warm-up, builds the request list, then runs the
batch. The peak RSS (``VmHWM``) is read after the warm-up, after the
request list is built ("before") and after the batch ("after"); the growth per
request is what the batch itself costs. Requests and results are kept by design (the
caller holds them); what must not happen is a task or coroutine per request made up
front, so the child also counts live trio tasks (peak, every 0.02 s) and live
coroutine objects (once, 0.05 s in). Prints a markdown table; exit status 1 if a
request failed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _harness
from minimallm.mock import MockServerConfig, MockServerProcess

CLIENT = "minimallm-batched"
"""``run_batched`` under trio, no cache (``clients/minimallm_batched.py``)."""


def build_parser() -> argparse.ArgumentParser:
    """The command line (defaults: the acceptance scenario, under two minutes)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100_000, help="the large batch (default 100000)")
    p.add_argument("--small", type=int, default=1_000, help="the small batch (default 1000)")
    p.add_argument(
        "--concurrency", type=int, default=64, help="MAX_OUTSTANDING (num_workers twice that)"
    )
    p.add_argument("--json", type=Path, default=None, help="also write results here")
    return p


def measure(server: MockServerProcess, n: int, concurrency: int) -> dict[str, Any]:
    """One batch of ``n`` in a fresh child process; its JSON result."""
    scenario = _harness.Scenario(n, concurrency, 0.0, concurrency)
    return _harness.run_child(CLIENT, server.base_url, scenario, census=True)


def table(results: list[dict[str, Any]], concurrency: int) -> str:
    """One markdown row per batch size, then the marginal cost per request."""

    def mib(kib: int) -> str:
        return f"{kib / 1024:.1f}"

    def count(value: int | None) -> str:
        return "—" if value is None else str(value)  # None: the batch ended first

    lines = [
        f"concurrency = {concurrency}, latency 0, no cache; peak RSS (VmHWM) of the child process",
        "",
        "| requests | after warm-up MiB | before batch MiB | after batch MiB | "
        "batch growth MiB | growth per request | request list per request | "
        "peak trio tasks | coroutines alive | req/s | failures |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        n = r["n"]
        growth = r["maxrss_kib"] - r["maxrss_before_kib"]
        listed = r["maxrss_before_kib"] - r["maxrss_warm_kib"]
        lines.append(
            f"| {n:,} | {mib(r['maxrss_warm_kib'])} | {mib(r['maxrss_before_kib'])} | "
            f"{mib(r['maxrss_kib'])} | {mib(growth)} | {1024 * growth / n:,.0f} B | "
            f"{1024 * listed / n:,.0f} B | {r['peak_tasks']} | {count(r['coroutines'])} | "
            f"{n / r['wall_s']:.0f} | {r['failed'] + n - r['ok']} |"
        )
    if len(results) == 2:
        small, large = sorted(results, key=lambda r: r["n"])
        extra = large["n"] - small["n"]
        after = large["maxrss_kib"] - small["maxrss_kib"]
        lines += [
            "",
            f"- marginal peak RSS, {large['n']:,} vs {small['n']:,} requests: "
            f"{after / 1024:.1f} MiB for {extra:,} more requests = "
            f"**{1024 * after / extra:,.0f} bytes per request** (request + result + "
            "whatever the batch keeps per item)",
            f"- live trio tasks at most {large['peak_tasks']} for {large['n']:,} requests "
            f"vs {small['peak_tasks']} for {small['n']:,}; coroutine objects alive "
            f"{count(large['coroutines'])} vs {count(small['coroutines'])}",
        ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Run the small then the large batch; print the table; exit 1 on a failure."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.n < 1 or args.small < 1 or args.concurrency < 1:
        parser.error("--n, --small and --concurrency must be >= 1")
    source, load_before = _harness.source_fingerprint(), _harness.machine_load()
    results = []
    config = MockServerConfig(latency_s=0.0, max_records=0)
    with MockServerProcess(config) as server:
        for n in dict.fromkeys([args.small, args.n]):
            out = measure(server, n, args.concurrency)
            out["n"] = n
            print(
                f"  {n:>8,} requests: peak RSS {out['maxrss_before_kib'] / 1024:.1f} -> "
                f"{out['maxrss_kib'] / 1024:.1f} MiB, {out['peak_tasks']} tasks at most",
                file=sys.stderr,
                flush=True,
            )
            results.append(out)
    print(f"{load_before} before, {_harness.machine_load()} after; src {source}\n")
    print(table(results, args.concurrency))
    if _harness.source_fingerprint() != source:
        print("\nWARNING: minimallm's source changed during the run.")
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 1 if any(r["failed"] or r["ok"] != r["n"] for r in results) else 0


if __name__ == "__main__":
    raise SystemExit(main())
