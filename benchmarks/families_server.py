"""The families against servers that push back: pacing, a rate limit, a concurrency
cap, random faults, an outage and a 429 storm. Each run has its own server; the
server's arrival stamps give the time series."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from benchmarks import plots
from benchmarks._runs import ServerRun, median_or_none, run_server_family
from benchmarks.metrics import achieved_rate, max_in_window, rate_series, recovery_s
from benchmarks.report import FamilyResult, markdown
from benchmarks.scenarios import Family
from minimallm.mock import Outage, Storm

__all__ = ["capacity", "faults", "outage", "pacing", "rate_limited", "storm"]

BIN_S = 0.5
"""Width of the time-series bins, seconds."""


def _first(runs: dict[str, list[ServerRun]]) -> dict[str, ServerRun]:
    return {c: rs[0] for c, rs in runs.items() if rs}


def _ok_series(run: ServerRun, end: float) -> list[tuple[float, float]]:
    return rate_series(run.ok_times(), start=0.0, end=end, bin_s=BIN_S)


def _end(runs: dict[str, ServerRun]) -> float:
    return max((t for r in runs.values() for t, _ in r.arrivals[-1:]), default=1.0) + BIN_S


def _errors(runs: dict[str, list[ServerRun]]) -> list[str]:
    return [f"{r.client}: {r.error}" for rs in runs.values() for r in rs if r.error]


def _data(runs: dict[str, list[ServerRun]]) -> dict[str, Any]:
    return {
        c: [
            {"ok": r.ok, "failed": r.failed, "wall_s": r.wall_s, "cpu_s": r.cpu_s,
             "timed_out": r.timed_out, "attempts": r.attempts, "error": r.error,
             "outcomes": dict(r.stats.outcomes) if r.stats else {},
             "phases": {k: dict(v) for k, v in r.stats.phases.items()} if r.stats else {},
             **r.extra}
            for r in rs
        ]
        for c, rs in runs.items()
    }  # fmt: skip


def _versus(label: str, values: dict[str, str]) -> list[str]:
    """One headline line: minimallm's figure next to every peer's."""
    return ["- " + label + ": " + "; ".join(f"{c} **{v}**" for c, v in values.items())]


def _result(
    family: Family,
    runs: dict[str, list[ServerRun]],
    head: Sequence[str],
    row: Callable[[ServerRun], list[object]],
    headline: tuple[str, dict[str, str]],
    plot: Callable[[Path], None],
    notes: Sequence[str] = (),
) -> FamilyResult:
    """The family's result; ``headline`` (measure, figure per client) becomes the first
    note and the overview's line, ``notes`` follow."""
    s = family.settings
    conditions = (
        f"N = {family.n:,}, MAX_OUTSTANDING {s.concurrency}, MAX_ATTEMPTS {s.max_attempts}, "
        f"TIMEOUT_S {s.timeout_s:g}" + (f", RPM {s.rpm}" if s.rpm else "")
        + f", runs cut at {family.deadline_s:g} s; " + family.what
    )  # fmt: skip
    rows = [row(r) for rs in runs.values() for r in rs]
    return FamilyResult(
        family.name, family.title, conditions, markdown(head, rows),
        [*_versus(*headline), *notes], _data(runs), plot, _errors(runs), headline=headline,
    )  # fmt: skip


def pacing(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """Sends per second against RPM/60, and the busiest 1-s and 60-s windows."""
    runs = run_server_family(family, rounds, log)
    target = family.settings.rpm / 60

    def sends(r: ServerRun) -> list[float]:
        return sorted(t for t, _ in r.arrivals)

    def row(r: ServerRun) -> list[object]:
        times = sends(r)
        rate = achieved_rate(times)
        return [
            r.client, len(times), r.describe_wall(),
            "—" if rate is None else f"{rate:.2f}",
            "—" if rate is None else f"{rate / target:.3f}",
            max_in_window(times, 1.0), max_in_window(times, 60.0), r.failures,
        ]  # fmt: skip

    first = _first(runs)
    headline = (
        f"sends/s ÷ {target:g}",
        {c: f"{(achieved_rate(sends(r)) or 0) / target:.3f}" for c, r in first.items()},
    )

    def plot(path: Path) -> None:
        end = _end(first)
        plots.series(
            path, title=family.title, ylabel="sends per second (1-s bins)",
            lines={c: rate_series(sends(r), start=0.0, end=end, bin_s=1.0)
                   for c, r in first.items()},
            reference=(target, f"RPM {family.settings.rpm} = {target:g}/s"),
        )  # fmt: skip

    head = ["client", "sends", "wall s", "sends/s", f"÷ {target:g}", "max in 1 s", "max in 60 s",
            "failures"]  # fmt: skip
    return _result(family, runs, head, row, headline, plot)


def rate_limited(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """Goodput against the bucket's rate, the share of attempts answered 429."""
    runs = run_server_family(family, rounds, log)
    rate = family.server.rate_limit_per_s or 1.0

    def goodput(r: ServerRun) -> float:
        return r.succeeded / r.wall_s if r.wall_s else 0.0

    def row(r: ServerRun) -> list[object]:
        share = r.outcome("ratelimit") / r.attempts if r.attempts else 0.0
        return [
            r.client, r.describe_wall(), f"{goodput(r):.1f}", f"{goodput(r) / rate:.3f}",
            r.attempts, r.outcome("ratelimit"), f"{100 * share:.1f} %", r.failures,
        ]  # fmt: skip

    first = _first(runs)
    headline = ("goodput ÷ rate", {c: f"{goodput(r) / rate:.3f}" for c, r in first.items()})

    def plot(path: Path) -> None:
        plots.series(
            path, title=family.title, ylabel="successful answers per second",
            lines={c: _ok_series(r, _end(first)) for c, r in first.items()},
            reference=(rate, f"the server's rate: {rate:g}/s"),
        )  # fmt: skip

    head = ["client", "wall s", "goodput/s", "÷ rate", "attempts", "429s", "share 429",
            "failures"]  # fmt: skip
    return _result(family, runs, head, row, headline, plot)


def capacity(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """Wall time against the ideal of every slot busy all the time."""
    runs = run_server_family(family, rounds, log)
    cfg = family.server
    slots = cfg.capacity or 1
    spread = math.exp(cfg.latency_sigma**2 / 2) if cfg.latency_dist == "lognormal" else 1.0
    mean = cfg.latency_s * spread  # a lognormal's mean from its median
    ideal = family.n * mean / slots

    def row(r: ServerRun) -> list[object]:
        ratio = "—" if r.timed_out or r.error else f"{r.wall_s / ideal:.2f}"
        return [r.client, r.describe_wall(), ratio, r.attempts, r.outcome("capacity"), r.failures]

    first = _first(runs)
    notes = [f"- ideal = {family.n:,} * {mean * 1000:.0f} ms mean ÷ {slots} slots = {ideal:.1f} s"]
    headline = (
        "wall ÷ ideal",
        {c: ("cut" if r.timed_out else f"{r.wall_s / ideal:.2f}") for c, r in first.items()},
    )

    def plot(path: Path) -> None:
        plots.series(
            path, title=family.title, ylabel="successful answers per second",
            lines={c: _ok_series(r, _end(first)) for c, r in first.items()},
            reference=(slots / mean, f"{slots} slots busy: {slots / mean:.0f}/s"),
        )  # fmt: skip

    head = ["client", "wall s", "wall ÷ ideal", "attempts", "429s", "failures"]
    return _result(family, runs, head, row, headline, plot, notes)


def faults(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """Wall and failures under random faults, medians over the rounds."""
    runs = run_server_family(family, rounds, log)

    def row(r: ServerRun) -> list[object]:
        done = r.succeeded + r.failures
        retried = "—" if r.timed_out or not done else f"{100 * (r.attempts - done) / done:.0f} %"
        return [r.client, r.round, r.describe_wall(), r.failures, r.attempts, retried]

    medians = {
        c: median_or_none([r.wall_s for r in rs if not (r.timed_out or r.error)])
        for c, rs in runs.items()
    }
    headline = (
        f"median wall over {rounds} round(s), s",
        {c: ("cut" if m is None else f"{m:.1f}") for c, m in medians.items()},
    )
    notes = _versus(
        "failures per round", {c: ", ".join(str(r.failures) for r in rs) for c, rs in runs.items()}
    )

    def plot(path: Path) -> None:
        plots.bars(
            path, title=family.title, ylabel="median wall time, s",
            values=medians,
            notes={c: f"{m:.1f} s" if m is not None else f"cut at {family.deadline_s:g} s"
                   for c, m in medians.items()},
        )  # fmt: skip

    head = ["client", "round", "wall s", "failures", "attempts", "retried"]
    return _result(family, runs, head, row, headline, plot, notes)


def outage(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """Failures and wall when the server refuses connections for a while."""
    runs = run_server_family(family, rounds, log)
    phase = next(p for p in family.server.phases if isinstance(p, Outage))

    def row(r: ServerRun) -> list[object]:
        reset = r.stats.phases.get("outage", {}).get("connections_reset", 0) if r.stats else 0
        return [r.client, r.describe_wall(), r.failures, r.succeeded, r.attempts,
                r.extra.get("attempts", "—"), reset]  # fmt: skip

    first = _first(runs)
    headline = ("failures", {c: str(r.failures) for c, r in first.items()})
    notes = _versus("wall s", {c: r.describe_wall() for c, r in first.items()})

    def plot(path: Path) -> None:
        plots.series(
            path, title=family.title, ylabel="successful answers per second",
            lines={c: _ok_series(r, _end(first)) for c, r in first.items()},
            bands=[(phase.start_s, phase.end_s, f"outage ({phase.mode})")],
        )  # fmt: skip

    head = ["client", "wall s", "failures", "succeeded", "attempts (server)",
            "attempts (client)", "connections reset"]  # fmt: skip
    return _result(family, runs, head, row, headline, plot, notes)


def storm(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """Time from the storm's end until throughput is back to 90 % of before it."""
    runs = run_server_family(family, rounds, log)
    phase = next(p for p in family.server.phases if isinstance(p, Storm))
    before = (phase.start_s / 4, phase.start_s)

    def recovery(r: ServerRun) -> tuple[float | None, float]:
        return recovery_s(r.ok_times(), before=before, after=phase.end_s)

    def row(r: ServerRun) -> list[object]:
        seconds, baseline = recovery(r)
        back = "never (in this run)" if seconds is None else f"{seconds:.1f}"
        return [r.client, r.describe_wall(), f"{baseline:.0f}", back, r.outcome("storm"),
                r.failures]  # fmt: skip

    first = _first(runs)
    headline = (
        "seconds until ≥ 90 % of the throughput before the storm",
        {c: ("never" if (s := recovery(r)[0]) is None else f"{s:.1f}") for c, r in first.items()},
    )
    notes = _versus("failures", {c: str(r.failures) for c, r in first.items()})

    def plot(path: Path) -> None:
        plots.series(
            path, title=family.title, ylabel="successful answers per second",
            lines={c: _ok_series(r, _end(first)) for c, r in first.items()},
            bands=[(phase.start_s, phase.end_s, f"storm: {phase.status} for everything")],
        )  # fmt: skip

    head = ["client", "wall s", "ok/s before", "recovery s", "storm answers", "failures"]
    return _result(family, runs, head, row, headline, plot, notes)
