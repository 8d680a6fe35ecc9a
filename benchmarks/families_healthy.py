"""The families against a healthy server: latency-bound, overhead (latency 0), the fully
cached rerun and the memory of large batches."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from benchmarks import _harness, bench_batch_memory, bench_cache, plots
from benchmarks.clients import CLIENTS, minimallm_streamed
from benchmarks.report import FamilyResult, markdown
from benchmarks.scenarios import MILLION, MILLION_QUICK, Family
from minimallm.mock import MockServerConfig, MockServerProcess

__all__ = ["cached", "latency_bound", "memory", "overhead"]

REFERENCE = "aiohttp-asyncio"
"""The peer CPU ratios divide by (the lean hand-written loop)."""


def _rows(family: Family, rounds: int, log: TextIO | None) -> list[_harness.Row]:
    c = family.settings.concurrency
    scenario = _harness.Scenario(family.n, c, family.latency_s, c)
    return _harness.run_scenario(list(family.rows), scenario, rounds, log=log)


def _conditions(family: Family, rounds: int) -> str:
    return (
        f"N = {family.n:,} per row, {family.settings.concurrency} in flight, "
        f"median of {rounds} round(s), rows interleaved"
    )


def latency_bound(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """req/s ÷ (concurrency ÷ latency) for every row."""
    rows = _rows(family, rounds, log)
    ideal = family.settings.concurrency / family.latency_s
    table = markdown(
        ["client", "req/s", "efficiency", "CPU µs/req", "peak RSS MiB", "failures"],
        [
            [r.client, f"{r.rps:.0f}", f"{r.efficiency or 0:.3f}", f"{r.cpu_us:.0f}",
             f"{r.rss_mib:.0f}", r.failures]
            for r in rows
        ],
    )  # fmt: skip
    peers = {r.client: r.efficiency for r in rows if CLIENTS[r.client].kind != "minimallm"}
    same_run = ", ".join(f"{k} {v:.3f}" for k, v in peers.items() if v is not None)
    notes = [
        f"- {r.client}: {r.rps:.0f} / {ideal:.0f} req/s = **{r.efficiency or 0:.3f}** "
        f"(same run: {same_run})"
        for r in rows
        if CLIENTS[r.client].kind == "minimallm"
    ]

    def plot(path: Path) -> None:
        plots.bars(
            path,
            title=family.title,
            values={r.client: r.efficiency for r in rows},
            ylabel="req/s ÷ ideal",
            reference=(1.0, f"ideal: {ideal:.0f} req/s"),
        )

    return FamilyResult(
        family.name, family.title, _conditions(family, rounds) + "; " + family.what,
        table, notes, {"rows": _harness.rows_as_json(rows)}, plot,
        headline=("efficiency", {r.client: f"{r.efficiency or 0:.3f}" for r in rows}),
    )  # fmt: skip


def overhead(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """CPU µs per request at latency 0, and its ratio to the lean aiohttp loop."""
    rows = _rows(family, rounds, log)
    ref = next((r for r in rows if r.client == REFERENCE), None)

    def ratio(row: _harness.Row) -> str:
        return "—" if ref is None else f"{row.cpu_us / ref.cpu_us:.2f}"

    table = markdown(
        ["client", "req/s", "CPU µs/req", f"CPU ÷ {REFERENCE}", "peak RSS MiB", "server busy",
         "failures"],
        [
            [r.client, f"{r.rps:.0f}", f"{r.cpu_us:.0f}", ratio(r), f"{r.rss_mib:.0f}",
             "—" if r.server_busy is None else f"{100 * r.server_busy:.0f} %", r.failures]
            for r in rows
        ],
    )  # fmt: skip
    notes = [
        f"- CPU/request: {r.client} {r.cpu_us:.0f} µs ÷ {REFERENCE} {ref.cpu_us:.0f} µs "
        f"= **{r.cpu_us / ref.cpu_us:.2f}**"
        for r in rows
        if ref is not None and CLIENTS[r.client].kind == "minimallm"
    ]

    def plot(path: Path) -> None:
        plots.bars(
            path,
            title=family.title,
            values={r.client: r.cpu_us for r in rows},
            ylabel="client CPU µs per request",
        )

    return FamilyResult(
        family.name, family.title, _conditions(family, rounds) + "; " + family.what,
        table, notes, {"rows": _harness.rows_as_json(rows)}, plot,
        headline=("CPU µs per request", {r.client: f"{r.cpu_us:.0f}" for r in rows}),
    )  # fmt: skip


def cached(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """Fill a cache in one process, rerun it in new ones: hits per second."""
    c = family.settings.concurrency
    scenario = _harness.Scenario(family.n, c, 0.0, c)
    out = bench_cache.run_rerun(scenario, rounds, log)
    fill, row = out["fill"], out["row"]
    table = bench_cache.rerun_table(fill, row, rounds)
    notes = [f"- fully cached rerun: **{row.rps:,.0f} hits/s** (median of {rounds} processes)"]

    def plot(path: Path) -> None:
        plots.bars(
            path,
            title=family.title,
            values={f"minimallm rerun {i + 1}": r.rps for i, r in enumerate(row.runs)},
            ylabel="cache hits per second",
            reference=(100_000.0, "issue 11's aim: 100,000/s"),
        )

    data = {"hits_per_s": row.rps, "per_process": [r.rps for r in row.runs]}
    return FamilyResult(
        family.name, family.title, f"N = {family.n:,}, latency 0; " + family.what,
        table, notes, data, plot, list(out["problems"]),
        headline=("hits/s", {"minimallm-batched-cache": f"{row.rps:,.0f}"}),
    )  # fmt: skip


def memory(family: Family, rounds: int, log: TextIO | None, quick: bool) -> FamilyResult:
    """Peak RSS of ``run_batched`` at a small size and ``n``; the streamed row at a
    million once minimallm can stream results (skipped until then)."""
    c = family.settings.concurrency
    small_n = max(100, family.n // 100)
    results = []
    with MockServerProcess(MockServerConfig(max_records=0)) as server:
        for n in (small_n, family.n):
            out = bench_batch_memory.measure(server, n, c)
            out["n"] = n
            results.append(out)
        big = MILLION_QUICK if quick else MILLION
        streamed: dict[str, object] | None = None
        error: str | None = None
        if minimallm_streamed.available():
            scenario = _harness.Scenario(big, c, 0.0, c)
            try:  # a crashed row is reported, not the end of the whole run
                streamed = _harness.run_child("minimallm-streamed", server.base_url, scenario)
            except _harness.ChildError as exc:
                error = str(exc).splitlines()[0]
    table = bench_batch_memory.table(results, c)
    if error is not None:
        line = f"| {big:,} (streamed) | ERROR: {error} |"
        rss_big = None
    elif streamed is None:
        line = (
            f"| {big:,} (streamed) | skipped: minimallm has no streaming results API yet — "
            f"HOOK in benchmarks/clients/minimallm_streamed.py |"
        )
        rss_big = None
    else:
        rss_big = int(streamed["maxrss_kib"]) / 1024  # type: ignore[call-overload]
        line = (
            f"| {big:,} (streamed) | peak RSS **{rss_big:.1f} MiB**, "
            f"{big / float(streamed['wall_s']):.0f} req/s, failures "  # type: ignore[arg-type]
            f"{streamed['failed']} |"
        )
    table += "\n\n| requests | minimallm-streamed |\n|---|---|\n" + line
    values: dict[str, float | None] = {
        f"minimallm batched {r['n']:,}": r["maxrss_kib"] / 1024 for r in results
    }
    values[f"minimallm streamed {big:,}"] = rss_big

    def plot(path: Path) -> None:
        plots.bars(
            path,
            title=family.title,
            values=values,
            ylabel="peak RSS of the client process, MiB",
            notes={} if rss_big is not None else {f"minimallm streamed {big:,}": "skipped"},
        )

    data = {"batched": results, "streamed": streamed}
    notes = [
        f"- peak RSS at {r['n']:,} requests: {r['maxrss_kib'] / 1024:.1f} MiB" for r in results
    ]
    if rss_big is not None:
        notes.append(f"- peak RSS at {big:,} requests, streamed: {rss_big:.1f} MiB")
    peak = {"minimallm-batched": f"{results[-1]['maxrss_kib'] / 1024:.0f} MiB"}
    headline = (f"peak RSS at {family.n:,}", peak)
    return FamilyResult(
        family.name, family.title, family.what, table, notes, data, plot,
        errors=[error] if error is not None else [], headline=headline,
    )  # fmt: skip
