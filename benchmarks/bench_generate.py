"""Benchmark ``generate()`` against the mock server, next to plain baseline clients.

    python benchmarks/bench_generate.py --n 4000 --concurrency 64 --latency 0.1 0 --rounds 3
    python benchmarks/bench_generate.py --quick          # a few seconds, for CI

Each row runs in its own process (its CPU and RSS are its own); the mock server runs
in another. Prints a markdown table and the headline ratios; ``--json`` saves them.
``--profile DIR`` writes a cProfile of each row's timed part (one round, main thread).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _harness
from benchmarks.clients import CLIENTS, DEFAULT_CLIENTS

QUICK = {
    "n": 200,
    "concurrency": 16,
    "latency": [0.0],
    "rounds": 1,
    "clients": [*DEFAULT_CLIENTS, "httpx-trio"],
}
"""What ``--quick`` changes (unless given too): a few seconds, every real client."""


def build_parser() -> argparse.ArgumentParser:
    """The command line (defaults: the acceptance scenario, about two minutes)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=4000, help="timed requests per row (default 4000)")
    p.add_argument("--concurrency", type=int, default=64, help="requests in flight (default 64)")
    p.add_argument(
        "--latency", type=float, nargs="+", default=[0.1, 0.0],
        help="server latencies to run, seconds (default 0.1 0)",
    )  # fmt: skip
    p.add_argument("--rounds", type=int, default=3, help="rounds per row; median shown")
    p.add_argument(
        "--warmup", type=int, default=None,
        help="untimed requests first (default: concurrency), to open connections",
    )  # fmt: skip
    p.add_argument(
        "--clients", nargs="+", choices=[*CLIENTS, "all"], default=DEFAULT_CLIENTS, metavar="NAME",
        help=f"rows to run: {', '.join(CLIENTS)}, or all (default: {' '.join(DEFAULT_CLIENTS)})",
    )  # fmt: skip
    p.add_argument(
        "--quick", action="store_true",
        help="smoke run in seconds: N=200, concurrency 16, latency 0, one round, plus httpx-trio",
    )  # fmt: skip
    p.add_argument("--json", type=Path, default=None, help="also write results here")
    p.add_argument("--profile", type=Path, default=None, help="cProfile each row into DIR")
    p.add_argument("--quiet", action="store_true", help="no per-run progress on stderr")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run every scenario; print the table; exit 1 if any request failed."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.quick:
        given = {a.lstrip("-").split("=")[0] for a in (argv or sys.argv[1:])}
        for key, value in QUICK.items():
            if key not in given:
                setattr(args, key, value)
    if "all" in args.clients:
        args.clients = list(CLIENTS)
    if args.n < 1 or args.concurrency < 1 or args.rounds < 1:
        parser.error("--n, --concurrency and --rounds must be >= 1")
    warmup = args.concurrency if args.warmup is None else args.warmup
    log = None if args.quiet else sys.stderr
    if args.profile is not None:
        return _profile(args, warmup)
    source, load_before = _harness.source_fingerprint(), _harness.machine_load()
    rows: list[_harness.Row] = []
    for latency in args.latency:
        scenario = _harness.Scenario(args.n, args.concurrency, latency, warmup)
        rows += _harness.run_scenario(args.clients, scenario, args.rounds, log=log)
    conditions = f"; {load_before} before, {_harness.machine_load()} after; src {source}"
    print(_harness.markdown_table(rows, args.rounds, conditions))
    print()
    print("\n".join(_harness.ratio_lines(rows)))
    changed = _harness.source_fingerprint() != source
    if changed:
        print("\nWARNING: minimallm's source changed during the run: rows are not comparable.")
    if args.json is not None:
        args.json.write_text(json.dumps(_harness.rows_as_json(rows), indent=2))
    return 1 if any(r.failures for r in rows) else 0


def _profile(args: argparse.Namespace, warmup: int) -> int:
    from minimallm.mock import MockServerConfig, MockServerProcess

    args.profile.mkdir(parents=True, exist_ok=True)
    for latency in args.latency:
        scenario = _harness.Scenario(args.n, args.concurrency, latency, warmup)
        with MockServerProcess(MockServerConfig(latency_s=latency, max_records=0)) as server:
            for client in args.clients:
                path = args.profile.resolve() / f"{client}-latency{latency:g}.prof"
                out = _harness.run_child(client, server.base_url, scenario, profile=path)
                print(f"{client} latency {latency:g}: {out} -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
