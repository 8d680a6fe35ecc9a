"""The core's cost as a user's whole process sees it: minimallm vs a lean aiohttp loop.

    python -m benchmarks.bench_core                   # every part, ~4 min on 2 cores
    python -m benchmarks.bench_core --parts cpu --rounds 5
    python -m benchmarks.bench_core --quick           # smoke run, seconds

Every row is a separate process running ``benchmarks/_core_child.py``, a user's
script: ``asyncio.run`` + ``await backend.run_batched(requests)`` (the README's quick
start; MAX_OUTSTANDING = 64, every other setting at its default) or the lean aiohttp
loop (``asyncio.Semaphore(64)``-bounded ``gather`` of aiohttp posts, JSON parsed, text
kept), against the project's mock server (latency 0) in another process. Imports,
start-up and tear-down count: CPU is the child's user + system time from ``os.wait4``,
peak RSS its ``VmHWM`` read at the end while it still holds every result.

Parts (issue 14, acceptance 3):

- ``cpu``: CPU per request at ``--n`` (20,000) requests, the two clients alternated
  (each round starts with the other one), median of ``--rounds`` (3); and the marginal
  CPU per request between ``--small`` (2,000) and ``--large`` (40,000) requests (the
  difference of the two runs' CPU ÷ the difference in requests: start-up cancels out).
  Target: minimallm ÷ aiohttp <= 0.6 (aim 0.4).
- ``rss``: peak RSS of a process holding ``--hold`` (100,000) results (minimallm's
  results, aiohttp's texts), median of ``--rss-rounds`` (1). Target: <= 1.5x. The
  gather loop makes a task per request up front (~2.5 KB each, its peak), so the
  ``aiohttp-pool`` row (64 workers pulling ids, no task per request: the texts and
  little else) is shown too, and the ratio to it as well.
- ``rpm``: minimallm's peak RSS at RPM = 6,000,000 and RPM = 0 with ``--rpm-n``
  (4,000) requests, and at RPM = 600 and RPM = 0 with ``--rpm600-n`` (100: RPM 600
  sends 10 per second, so 4,000 would take 400 s; pass ``--rpm600-n 4000`` for the
  literal comparison). What pacing costs is each paced row minus its unpaced peer;
  target: the same at 6,000,000 as at 600 (within ~1 MiB of noise).

Bytecode: each client runs from compiled bytecode, as from an install (``pip install``
compiles every module; the venv's aiohttp was). Where ``PYTHONDONTWRITEBYTECODE`` is set
(this repository's sandbox sets it), a process importing minimallm from a source tree
would compile its ~90 modules again every time (~0.07 s of CPU, ~3.5 µs per request at
20,000): the children run with ``PYTHONPYCACHEPREFIX`` set to a temporary directory
instead (nothing is written into the tree) after one unmeasured warm-up run of each
client that fills it. ``--no-bytecode-cache`` runs them with the caller's environment
as is.

Prints markdown tables and the ratios; ``--json`` also writes every run. Exit status 1
if any request failed or the server saw other than one request per call.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import _harness
from minimallm.mock import MockServerConfig, MockServerProcess

CHILD = Path(__file__).resolve().parent / "_core_child.py"
CLIENTS = ("minimallm", "aiohttp")
POOL = "aiohttp-pool"
"""The rss part's third row: aiohttp from 64 worker tasks, no task per request."""
PARTS = ("cpu", "rss", "rpm")
HIGH_RPM = 6_000_000
LOW_RPM = 600


@dataclass(frozen=True, slots=True)
class CoreRun:
    """One whole process: its client, requests, RPM, answers, CPU (s), wall (s), peak
    RSS (KiB), and the HTTP requests the server saw meanwhile."""

    client: str
    n: int
    rpm: int
    received: int
    texts: int
    cpu_s: float
    wall_s: float
    vmhwm_kib: int
    server_requests: int
    server_cpu_s: float | None = None
    """The mock server's CPU meanwhile (None without psutil)."""

    @property
    def ok(self) -> bool:
        """Every request answered with the mock's text, one HTTP request each."""
        return self.received == self.texts == self.n == self.server_requests

    @property
    def cpu_us(self) -> float:
        """CPU per request, microseconds (the whole process's)."""
        return 1e6 * self.cpu_s / self.n

    @property
    def server_cpu_us(self) -> float | None:
        """The server's CPU per request, microseconds: when it nears the client's wall
        time per request, the server set the pace and the client waited on it."""
        return None if self.server_cpu_s is None else 1e6 * self.server_cpu_s / self.n

    @property
    def rss_mib(self) -> float:
        """Peak RSS, MiB."""
        return self.vmhwm_kib / 1024


_CHILD_ENV: dict[str, str] | None = None
"""The children's environment (None: the caller's; see the module docstring)."""


def bytecode_cache(directory: str) -> dict[str, str]:
    """The caller's environment with bytecode written to (and read from) ``directory``."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = directory
    return env


def run_one(
    server: MockServerProcess, client: str, n: int, concurrency: int = 64, rpm: int = 0
) -> CoreRun:
    """Run ``_core_child.py`` once; its CPU from ``os.wait4`` (the child alone)."""
    seen = server.stats.requests_total
    server_cpu0 = _harness.server_cpu(server.pid)
    cmd = [sys.executable, str(CHILD), client, server.base_url, str(n), str(concurrency), str(rpm)]
    with tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, env=_CHILD_ENV)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        server_cpu1 = _harness.server_cpu(server.pid)
        proc.returncode = os.waitstatus_to_exitcode(status)
        proc.stdout.close()
        if proc.returncode != 0 or not out.strip():
            err.seek(0)
            tail = err.read()[-3000:].decode(errors="replace")
            raise RuntimeError(f"{client} n={n} rpm={rpm} exited {proc.returncode}:\n{tail}")
    line = json.loads(out.decode().strip().splitlines()[-1])
    return CoreRun(
        client=client,
        n=n,
        rpm=rpm,
        received=line["received"],
        texts=line["texts"],
        cpu_s=usage.ru_utime + usage.ru_stime,
        wall_s=wall,
        vmhwm_kib=line["vmhwm_kib"],
        server_requests=server.stats.requests_total - seen,
        server_cpu_s=(
            None if server_cpu0 is None or server_cpu1 is None else server_cpu1 - server_cpu0
        ),
    )


def _log(run: CoreRun, quiet: bool) -> None:
    if not quiet:
        print(
            f"  {run.client:<9} n={run.n:<7,} rpm={run.rpm:<9,} {run.cpu_us:7.1f} µs/req "
            f"{run.rss_mib:6.1f} MiB {run.wall_s:6.2f} s ok={run.ok}"
            + ("" if run.server_cpu_us is None else f" server {run.server_cpu_us:.1f} µs/req"),
            file=sys.stderr,
            flush=True,
        )


def _alternated(rounds: int) -> list[tuple[str, ...]]:
    """Client order per round: round r starts with client r mod 2."""
    return [CLIENTS[r % 2 :] + CLIENTS[: r % 2] for r in range(rounds)]


def measure_cpu(
    server: MockServerProcess, n: int, small: int, large: int, rounds: int, quiet: bool
) -> list[CoreRun]:
    """Every round: each client at ``n``, ``small`` and ``large``, alternated."""
    runs = []
    for order in _alternated(rounds):
        for size in (n, small, large):
            for client in order:
                runs.append(run_one(server, client, size))
                _log(runs[-1], quiet)
    return runs


def measure_rss(server: MockServerProcess, hold: int, rounds: int, quiet: bool) -> list[CoreRun]:
    """Each client (and ``aiohttp-pool``) holding ``hold`` results, alternated."""
    runs = []
    for order in _alternated(rounds):
        for client in (*order, POOL):
            runs.append(run_one(server, client, hold))
            _log(runs[-1], quiet)
    return runs


def measure_rpm(
    server: MockServerProcess, n: int, n600: int, rounds: int, quiet: bool
) -> list[CoreRun]:
    """minimallm at RPM 6,000,000 and 0 (``n`` requests), 600 and 0 (``n600``)."""
    runs = []
    for _ in range(rounds):
        for size, rpm in ((n, HIGH_RPM), (n, 0), (n600, LOW_RPM), (n600, 0)):
            runs.append(run_one(server, "minimallm", size, rpm=rpm))
            _log(runs[-1], quiet)
    return runs


def _median(runs: list[CoreRun], attr: str, **match: Any) -> float:
    values = [getattr(r, attr) for r in runs if all(getattr(r, k) == v for k, v in match.items())]
    return float(statistics.median(values))


def _verdict(value: float, target: float, aim: float | None = None) -> str:
    met = "met" if value <= target else "NOT met"
    return f"target <= {target:g}" + (f", aim {aim:g}" if aim else "") + f": {met}"


def cpu_table(runs: list[CoreRun], n: int, small: int, large: int) -> list[str]:
    """CPU µs/request at ``n`` and marginal, per client, and the ratios."""
    rounds = len(runs) // 6
    lines = [
        f"(a) CPU per request, whole process, latency 0, 64 in flight; median of {rounds}",
        "",
        f"| client | CPU µs/req at {n:,} | marginal µs/req {small:,} → {large:,} "
        f"| wall s at {n:,} | req/s at {n:,} | server CPU µs/req at {n:,} |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    figures: dict[str, tuple[float, float]] = {}
    for client in CLIENTS:
        per_req = _median(runs, "cpu_us", client=client, n=n)
        lows = [r for r in runs if r.client == client and r.n == small]
        highs = [r for r in runs if r.client == client and r.n == large]
        marginal = statistics.median(
            1e6 * (hi.cpu_s - lo.cpu_s) / (large - small)
            for lo, hi in zip(lows, highs, strict=True)
        )
        wall = _median(runs, "wall_s", client=client, n=n)
        served = [r.server_cpu_us for r in runs if r.client == client and r.n == n]
        known = [us for us in served if us is not None]
        server = f"{statistics.median(known):.1f}" if known else "—"
        figures[client] = (per_req, marginal)
        lines.append(
            f"| {client} | {per_req:.1f} | {marginal:.1f} | {wall:.2f} | {n / wall:,.0f} "
            f"| {server} |"
        )
    (mine, mine_m), (base, base_m) = figures["minimallm"], figures["aiohttp"]
    lines += [
        "",
        f"- CPU/request at {n:,}: minimallm {mine:.1f} µs ÷ aiohttp {base:.1f} µs = "
        f"**{mine / base:.2f}x** ({_verdict(mine / base, 0.6, 0.4)})",
        f"- marginal CPU/request: minimallm {mine_m:.1f} µs ÷ aiohttp {base_m:.1f} µs = "
        f"**{mine_m / base_m:.2f}x**",
    ]
    return lines


def rss_table(runs: list[CoreRun], hold: int) -> list[str]:
    """Peak RSS per client holding ``hold`` results, and the ratios."""
    mine = _median(runs, "rss_mib", client="minimallm")
    lines = [
        f"(b) peak RSS (VmHWM) of a process holding {hold:,} results; median of {len(runs) // 3}",
        "",
        "| client | peak RSS MiB | per result (whole process ÷ n) |",
        "|---|---:|---:|",
    ]
    for client in (*CLIENTS, POOL):
        rss = _median(runs, "rss_mib", client=client)
        lines.append(f"| {client} | {rss:.1f} | {rss * 2**20 / hold:,.0f} B |")
    lines.append("")
    for peer in ("aiohttp", POOL):
        base = _median(runs, "rss_mib", client=peer)
        lines.append(
            f"- peak RSS: minimallm {mine:.1f} MiB ÷ {peer} {base:.1f} MiB = "
            f"**{mine / base:.2f}x** ({_verdict(mine / base, 1.5)})"
        )
    return lines


def rpm_table(runs: list[CoreRun], n: int, n600: int) -> list[str]:
    """minimallm's peak RSS paced and unpaced, and what pacing costs at each RPM."""

    def rss(size: int, rpm: int) -> float:
        return _median(runs, "rss_mib", n=size, rpm=rpm)

    high = rss(n, HIGH_RPM) - rss(n, 0)
    low = rss(n600, LOW_RPM) - rss(n600, 0)
    rows = [(n, HIGH_RPM), (n, 0), (n600, LOW_RPM), (n600, 0)]
    return [
        f"(c) minimallm's peak RSS by RPM; median of {len(runs) // 4}",
        "",
        "| RPM | requests | peak RSS MiB | wall s |",
        "|---:|---:|---:|---:|",
        *(
            f"| {rpm:,} | {size:,} | {rss(size, rpm):.1f} | "
            f"{_median(runs, 'wall_s', n=size, rpm=rpm):.2f} |"
            for size, rpm in rows
        ),
        "",
        f"- pacing's memory: RPM {HIGH_RPM:,} {high:+.1f} MiB over RPM 0 ({n:,} requests); "
        f"RPM {LOW_RPM} {low:+.1f} MiB over RPM 0 ({n600:,} requests); difference "
        f"**{high - low:+.1f} MiB** (target: within ~1 MiB: "
        f"{'met' if high - low <= 1.0 else 'NOT met'})",
    ]


def build_parser() -> argparse.ArgumentParser:
    """The command line (defaults: issue 14's acceptance sizes)."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    p.add_argument("--n", type=int, default=20_000, help="requests for CPU/request")
    p.add_argument("--small", type=int, default=2_000, help="marginal CPU: the small run")
    p.add_argument("--large", type=int, default=40_000, help="marginal CPU: the large run")
    p.add_argument("--rounds", type=int, default=3, help="rounds of the cpu part")
    p.add_argument("--hold", type=int, default=100_000, help="results held (rss part)")
    p.add_argument("--rss-rounds", type=int, default=1, help="rounds of the rss and rpm parts")
    p.add_argument("--rpm-n", type=int, default=4_000, help="requests at RPM 6,000,000 and 0")
    p.add_argument("--rpm600-n", type=int, default=100, help="requests at RPM 600 and 0")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one round")
    p.add_argument("--quiet", action="store_true", help="no per-run lines on stderr")
    p.add_argument("--json", type=Path, default=None, help="also write every run here")
    p.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="children run with the caller's environment as is (with "
        "PYTHONDONTWRITEBYTECODE set, minimallm is compiled again in every process)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Run the parts asked for; print the tables; exit 1 on a failed or repeated request."""
    args = build_parser().parse_args(argv)
    if args.quick:
        args.n, args.small, args.large, args.hold = 300, 100, 400, 500
        args.rpm_n, args.rpm600_n, args.rounds, args.rss_rounds = 300, 5, 1, 1
    source, load_before = _harness.source_fingerprint(), _harness.machine_load()
    runs: dict[str, list[CoreRun]] = {}
    global _CHILD_ENV
    with (
        tempfile.TemporaryDirectory(prefix="bench-core-pyc-") as pyc,
        MockServerProcess(MockServerConfig(latency_s=0.0, max_records=0)) as server,
    ):
        if not args.no_bytecode_cache:
            _CHILD_ENV = bytecode_cache(pyc)
            for client in (*CLIENTS, POOL):  # warm-up: compile into the cache, unmeasured
                run_one(server, client, 10)
        if "cpu" in args.parts:
            runs["cpu"] = measure_cpu(
                server, args.n, args.small, args.large, args.rounds, args.quiet
            )
        if "rss" in args.parts:
            runs["rss"] = measure_rss(server, args.hold, args.rss_rounds, args.quiet)
        if "rpm" in args.parts:
            runs["rpm"] = measure_rpm(
                server, args.rpm_n, args.rpm600_n, args.rss_rounds, args.quiet
            )
    cache = "no bytecode cache" if args.no_bytecode_cache else "bytecode cached"
    print(f"{load_before} before, {_harness.machine_load()} after; src {source}; {cache}\n")
    tables = {
        "cpu": lambda r: cpu_table(r, args.n, args.small, args.large),
        "rss": lambda r: rss_table(r, args.hold),
        "rpm": lambda r: rpm_table(r, args.rpm_n, args.rpm600_n),
    }
    for part, part_runs in runs.items():
        print("\n".join(tables[part](part_runs)) + "\n")
    if _harness.source_fingerprint() != source:
        print("WARNING: minimallm's source changed during the run (rows not comparable).")
    if args.json is not None:
        data = {part: [asdict(r) | {"ok": r.ok} for r in rs] for part, rs in runs.items()}
        args.json.write_text(json.dumps(data, indent=2))
    bad = [r for rs in runs.values() for r in rs if not r.ok]
    for r in bad:
        print(f"FAILED: {r}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
