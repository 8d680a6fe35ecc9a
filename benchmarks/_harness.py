"""Run client scenarios against one mock server process and summarise them.

Every row runs in its own child process (``_child.py``) so its CPU time and peak RSS
are its own; the mock server runs in another (``MockServerProcess``), so client and
server do not share a GIL. Rows are interleaved within a round and the order rotates
between rounds (the machine is noisy); a row's figure is the median over rounds.
"""

from __future__ import annotations

import hashlib
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.clients import CLIENTS
from minimallm.mock import MockServerConfig, MockServerProcess

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

try:  # the server's CPU is a diagnostic; the benchmark runs without psutil
    import psutil  # type: ignore[import-untyped]
except ImportError:  # pragma: no cover
    psutil = None


@dataclass(frozen=True, slots=True)
class Scenario:
    """What every row of one table shares: requests measured, in flight, server latency
    (seconds), warm-up requests sent before timing."""

    n: int
    concurrency: int
    latency_s: float
    warmup: int

    @property
    def ideal_rps(self) -> float | None:
        """concurrency ÷ latency (requests/s); None at latency 0 (no ideal)."""
        return self.concurrency / self.latency_s if self.latency_s > 0 else None


@dataclass(frozen=True, slots=True)
class Run:
    """One row in one round. Times in seconds, RSS in KiB."""

    client: str
    ok: int
    failed: int
    warmup_failed: int
    wall_s: float
    cpu_s: float
    maxrss_kib: int
    server_cpu_s: float | None
    server_requests: int
    cached: int = 0
    """Timed requests answered from the prompt cache (clients that report it)."""
    maxrss_before_kib: int = 0
    """Peak RSS just before the timed part (after warm-up and ``prepare``), KiB."""

    @property
    def rps(self) -> float:
        """Requests completed per second over the timed part."""
        return (self.ok + self.failed) / self.wall_s

    @property
    def cpu_us_per_request(self) -> float:
        """Client CPU (user + system, all threads) per request, microseconds."""
        return 1e6 * self.cpu_s / max(1, self.ok + self.failed)


@dataclass(frozen=True, slots=True)
class Row:
    """The median of one client's rounds in one scenario."""

    client: str
    scenario: Scenario
    runs: tuple[Run, ...]

    @property
    def rps(self) -> float:
        """Median requests/s."""
        return statistics.median(r.rps for r in self.runs)

    @property
    def efficiency(self) -> float | None:
        """Median requests/s ÷ ideal (concurrency ÷ latency); None at latency 0."""
        ideal = self.scenario.ideal_rps
        return None if ideal is None else self.rps / ideal

    @property
    def cpu_us(self) -> float:
        """Median client CPU per request, microseconds."""
        return statistics.median(r.cpu_us_per_request for r in self.runs)

    @property
    def rss_mib(self) -> float:
        """Median peak RSS of the client process, MiB."""
        return statistics.median(r.maxrss_kib for r in self.runs) / 1024

    @property
    def server_busy(self) -> float | None:
        """Median fraction of one core the server process used while timed."""
        shares = [r.server_cpu_s / r.wall_s for r in self.runs if r.server_cpu_s is not None]
        return statistics.median(shares) if shares else None

    @property
    def failures(self) -> int:
        """Failed or missing requests over all rounds (warm-up included)."""
        return sum(
            r.failed + r.warmup_failed + (self.scenario.n - r.ok - r.failed) for r in self.runs
        )


class ChildError(RuntimeError):
    """A client process failed or printed no result."""


def run_child(
    client: str,
    base_url: str,
    scenario: Scenario,
    *,
    profile: Path | None = None,
    timeout_s: float | None = None,
    options: dict[str, Any] | None = None,
    census: bool = False,
    deadline_s: float | None = None,
) -> dict[str, Any]:
    """Run one client in a fresh process and return its JSON result.

    ``options`` go to the client's ``open_client`` as keyword arguments (e.g.
    ``cache_dir``); ``census`` counts live trio tasks and coroutines while timed;
    ``deadline_s`` cuts the timed part short after that many seconds (the result then
    has ``timed_out``). A child that outlives its deadline by a minute is killed
    (ChildError).
    """
    spec = {
        "client": client,
        "base_url": base_url,
        "n": scenario.n,
        "concurrency": scenario.concurrency,
        "warmup": scenario.warmup,
        "profile": str(profile) if profile else None,
        "options": options or {},
        "census": census,
        "deadline_s": deadline_s,
    }
    if timeout_s is None and deadline_s is not None:
        timeout_s = deadline_s + 60.0
    if timeout_s is None:
        # Ten times the ideal duration (at latency 0: 5 ms per request), at least a
        # minute: only a hang trips it.
        ideal = scenario.ideal_rps
        total = scenario.n + scenario.warmup
        timeout_s = max(60.0, 10 * total / ideal if ideal else 0.005 * total)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks._child", json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            cwd=ROOT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ChildError(f"{client} still running after {timeout_s:.0f} s: killed") from exc
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ChildError(
            f"{client} exited with {proc.returncode}:\n{proc.stderr[-4000:]}{proc.stdout[-2000:]}"
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def server_cpu(pid: int) -> float | None:
    """CPU seconds (user + system) process ``pid`` has used so far; None without psutil."""
    if psutil is None:
        return None
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def run_once(
    client: str,
    server: MockServerProcess,
    scenario: Scenario,
    *,
    options: dict[str, Any] | None = None,
    timeout_s: float | None = None,
) -> Run:
    """One row, one round: run ``client`` in a fresh process against ``server``."""
    cpu0 = server_cpu(server.pid)
    seen0 = server.stats.requests_total
    out = run_child(client, server.base_url, scenario, options=options, timeout_s=timeout_s)
    cpu1 = server_cpu(server.pid)
    return Run(
        client=client,
        ok=out["ok"],
        failed=out["failed"],
        warmup_failed=out["warmup_failed"],
        wall_s=out["wall_s"],
        cpu_s=out["cpu_user_s"] + out["cpu_sys_s"],
        maxrss_kib=out["maxrss_kib"],
        # The server also counts the warm-up, and idles during the child's start-up:
        # server_busy slightly understates a saturated server.
        server_cpu_s=None if cpu0 is None or cpu1 is None else cpu1 - cpu0,
        server_requests=server.stats.requests_total - seen0,
        cached=out.get("cached", 0),
        maxrss_before_kib=out.get("maxrss_before_kib", 0),
    )


def run_scenario(
    clients: Sequence[str],
    scenario: Scenario,
    rounds: int,
    *,
    log: Any = None,
) -> list[Row]:
    """Start one mock server at the scenario's latency; run every client ``rounds``
    times, interleaved (round r starts at client r, so no client always goes first);
    return one Row per client, in the given order."""
    runs: dict[str, list[Run]] = {c: [] for c in clients}
    config = MockServerConfig(latency_s=scenario.latency_s, max_records=0)
    with MockServerProcess(config) as server:
        for r in range(rounds):
            order = [clients[(r + k) % len(clients)] for k in range(len(clients))]
            for client in order:
                run = run_once(client, server, scenario)
                runs[client].append(run)
                if log is not None:
                    print(
                        f"  latency {scenario.latency_s:g}s round {r + 1}/{rounds} "
                        f"{client:<18} {run.rps:8.0f} req/s {run.cpu_us_per_request:7.0f} "
                        f"µs/req  ok={run.ok} failed={run.failed}",
                        file=log,
                        flush=True,
                    )
    return [Row(c, scenario, tuple(runs[c])) for c in clients]


def source_fingerprint() -> str:
    """A short hash of minimallm's source files: compare before and after a run to
    notice that the code under test changed while it ran (rows not comparable)."""
    import minimallm

    root = Path(minimallm.__file__).resolve().parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def machine_load() -> str:
    """The 1-minute load average and core count, so a reader can judge the noise."""
    return f"load {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def cpu_ratio(row: Row, rows: Iterable[Row], baseline: str) -> float | None:
    """``row``'s CPU µs/request ÷ the named baseline's, in the same scenario."""
    for other in rows:
        if other.client == baseline and other.scenario == row.scenario:
            return row.cpu_us / other.cpu_us
    return None


def markdown_table(rows: Sequence[Row], rounds: int, conditions: str = "") -> str:
    """One line per (scenario, client): medians, efficiency and CPU ratios."""
    baselines = [c for c in dict.fromkeys(r.client for r in rows) if CLIENTS[c].reference]
    head = [
        "latency",
        "client",
        "req/s",
        "efficiency",
        "CPU µs/req",
        *(f"CPU ÷ {b}" for b in baselines),
        "peak RSS MiB",
        "server busy",
        "failures",
    ]
    lines = [
        f"N = {rows[0].scenario.n}, concurrency = {rows[0].scenario.concurrency}, "
        f"median of {rounds} round(s){conditions}",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
    ]
    for row in rows:
        cells = [
            f"{row.scenario.latency_s * 1000:g} ms",
            row.client,
            f"{row.rps:.0f}",
            _fmt(row.efficiency, ".3f"),
            f"{row.cpu_us:.0f}",
            *(_fmt(cpu_ratio(row, rows, b), ".2f") for b in baselines),
            f"{row.rss_mib:.0f}",
            _fmt(None if row.server_busy is None else 100 * row.server_busy, ".0f") + " %",
            str(row.failures),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def ratio_lines(rows: Sequence[Row]) -> list[str]:
    """The headline ratios: efficiency of each minimallm row where latency > 0; at
    the lowest latency, each minimallm row's CPU per request ÷ each baseline's."""
    out: list[str] = []
    for row in rows:
        if CLIENTS[row.client].kind == "minimallm" and row.efficiency is not None:
            ideal = row.scenario.ideal_rps
            same_run = ", ".join(
                f"{b.client} {b.efficiency:.3f}"
                for b in rows
                if CLIENTS[b.client].kind == "baseline"
                and b.scenario == row.scenario
                and b.efficiency is not None
            )
            out.append(
                f"- efficiency {row.client} at {row.scenario.concurrency} concurrent, "
                f"{row.scenario.latency_s * 1000:g} ms: {row.rps:.0f} / {ideal:.0f} req/s "
                f"= **{row.efficiency:.3f}**" + (f" (same run: {same_run})" if same_run else "")
            )
    lowest = min(r.scenario.latency_s for r in rows)
    for row in rows:
        if CLIENTS[row.client].kind != "minimallm" or row.scenario.latency_s != lowest:
            continue
        for base in rows:
            if CLIENTS[base.client].kind == "baseline" and base.scenario == row.scenario:
                out.append(
                    f"- CPU/request at {lowest * 1000:g} ms: {row.client} {row.cpu_us:.0f} µs "
                    f"÷ {base.client} {base.cpu_us:.0f} µs = **{row.cpu_us / base.cpu_us:.2f}**"
                )
    return out


def rows_as_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Machine-readable results (for tests and CI)."""
    return [
        {
            "client": r.client,
            "latency_s": r.scenario.latency_s,
            "n": r.scenario.n,
            "concurrency": r.scenario.concurrency,
            "rps": r.rps,
            "efficiency": r.efficiency,
            "cpu_us_per_request": r.cpu_us,
            "peak_rss_mib": r.rss_mib,
            "server_busy": r.server_busy,
            "failures": r.failures,
            "runs": [
                {
                    "ok": run.ok,
                    "failed": run.failed,
                    "warmup_failed": run.warmup_failed,
                    "wall_s": run.wall_s,
                    "cpu_s": run.cpu_s,
                    "maxrss_kib": run.maxrss_kib,
                    "server_requests": run.server_requests,
                }
                for run in r.runs
            ],
        }
        for r in rows
    ]
