"""The families against real nginx (``limit_req``, ``limit_conn``, a proxy over a stopped
upstream) and mock servers with other manners (Retry-After only, bare 429s, refusals
whatever the load, a daily budget, garbage headers, an account out of credit, a
Retry-After of a day, a queueing server). What the client saw comes from nginx's access
log when there is one, else from the mock's counters."""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from benchmarks import plots
from benchmarks._runs import ServerRun, run_server_family
from benchmarks.families_server import BIN_S, _first, _result, _versus
from benchmarks.metrics import rate_series, recovery_s
from benchmarks.report import FamilyResult
from benchmarks.scenarios import Family
from minimallm.mock import Outage

__all__ = ["gateway_down", "refusals"]


def _gateway(r: ServerRun) -> list[tuple[float, int]]:
    return [(float(t), int(s)) for t, s in r.extra.get("gateway", [])]


def _statuses(r: ServerRun) -> dict[int, int]:
    counts: dict[int, int] = {}
    for _, status in _gateway(r):
        counts[status] = counts.get(status, 0) + 1
    return counts


def _refused(r: ServerRun) -> int:
    """429s the client received: nginx's log when nginx stood in front, else the mock's."""
    if "gateway" in r.extra:
        return _statuses(r).get(429, 0)
    kinds = ("ratelimit", "storm", "429", "capacity", "refused", "window")
    return sum(r.outcome(k) for k in kinds)


def _attempts(r: ServerRun) -> int:
    return len(_gateway(r)) if "gateway" in r.extra else r.attempts


def _ok_times(r: ServerRun) -> list[float]:
    if "gateway" in r.extra:
        return sorted(t for t, s in _gateway(r) if s == 200)
    return r.ok_times()


def refusals(family: Family, rounds: int, log: TextIO | None, rate: float | None) -> FamilyResult:
    """Goodput (÷ ``rate`` when the server has one), 429s and failures per run."""
    runs = run_server_family(family, rounds, log)

    def goodput(r: ServerRun) -> float:
        return r.succeeded / r.wall_s if r.wall_s else 0.0

    def row(r: ServerRun) -> list[object]:
        ratio = "—" if rate is None else f"{goodput(r) / rate:.3f}"
        return [
            r.client, r.round, r.describe_wall(), r.succeeded, r.failures, f"{goodput(r):.1f}",
            ratio, _attempts(r), _refused(r),
        ]  # fmt: skip

    first = _first(runs)
    if rate is None:
        headline = ("goodput/s", {c: f"{goodput(r):.1f}" for c, r in first.items()})
    else:
        headline = ("goodput ÷ limit", {c: f"{goodput(r) / rate:.3f}" for c, r in first.items()})
    notes = [
        *_versus(
            "failures per run",
            {c: ", ".join(str(r.failures) for r in rs) for c, rs in runs.items()},
        ),
        *_versus(
            "429s per run", {c: ", ".join(str(_refused(r)) for r in rs) for c, rs in runs.items()}
        ),
    ]

    def plot(path: Path) -> None:
        end = max((t for r in first.values() for t in _ok_times(r)[-1:]), default=1.0) + BIN_S
        plots.series(
            path, title=family.title, ylabel="successful answers per second",
            lines={c: rate_series(_ok_times(r), start=0.0, end=end, bin_s=BIN_S)
                   for c, r in first.items()},
            reference=None if rate is None else (rate, f"the limit: {rate:g}/s"),
        )  # fmt: skip

    head = ["client", "run", "wall s", "ok", "failures", "goodput/s", "÷ limit", "attempts",
            "429s"]  # fmt: skip
    return _result(family, runs, head, row, headline, plot, notes)


def gateway_down(family: Family, rounds: int, log: TextIO | None) -> FamilyResult:
    """nginx over an upstream that is down for a while: failures, 502s, seconds from the
    upstream's return to the first success and to 90 % of the throughput before."""
    runs = run_server_family(family, rounds, log)
    phase = next(p for p in family.server.phases if isinstance(p, Outage))
    before = (phase.start_s / 4, phase.start_s)

    def first_ok(r: ServerRun) -> float | None:
        after = [t for t in _ok_times(r) if t >= phase.end_s]
        return after[0] - phase.end_s if after else None

    def back(r: ServerRun) -> float | None:
        return recovery_s(_ok_times(r), before=before, after=phase.end_s)[0]

    def fmt(v: float | None) -> str:
        return "never" if v is None else f"{v:.1f}"

    def row(r: ServerRun) -> list[object]:
        s = _statuses(r)
        return [
            r.client, r.describe_wall(), r.succeeded, r.failures, s.get(502, 0) + s.get(504, 0),
            fmt(first_ok(r)), fmt(back(r)),
        ]  # fmt: skip

    first = _first(runs)
    headline = ("failures", {c: str(r.failures) for c, r in first.items()})
    notes = [
        *_versus("s to the first success after the upstream's return",
                 {c: fmt(first_ok(r)) for c, r in first.items()}),
        *_versus("s to ≥ 90 % of the throughput before",
                 {c: fmt(back(r)) for c, r in first.items()}),
    ]  # fmt: skip

    def plot(path: Path) -> None:
        end = max((t for r in first.values() for t in _ok_times(r)[-1:]), default=1.0) + BIN_S
        plots.series(
            path, title=family.title, ylabel="successful answers per second",
            lines={c: rate_series(_ok_times(r), start=0.0, end=end, bin_s=BIN_S)
                   for c, r in first.items()},
            bands=[(phase.start_s, phase.end_s, "upstream down (nginx: 502)")],
        )  # fmt: skip

    head = ["client", "wall s", "ok", "failures", "502/504s", "first ok after s",
            "≥ 90 % after s"]  # fmt: skip
    return _result(family, runs, head, row, headline, plot, notes)
