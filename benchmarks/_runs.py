"""Run a ``server`` family: each run gets a fresh mock server process (its rate buckets,
capacity and timeline start afresh) and a fresh client process with a deadline; the
server's counters and arrival stamps are read after the run."""

from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, TextIO

from benchmarks import _harness, _nginx
from benchmarks.scenarios import Family
from minimallm.mock import MockServerProcess, MockStats

__all__ = ["ServerRun", "median_or_none", "run_server_family"]


@dataclass(frozen=True, slots=True)
class ServerRun:
    """One client run against its own server.

    ``ok``/``failed`` are the client's counts (None when a run cut short could not say);
    ``wall_s`` its timed part (seconds); ``timed_out``: cut short at the deadline;
    ``error``: the client process failed (then most fields are empty); ``stats`` and
    ``arrivals`` (``(seconds since the server's first chat request, outcome)``) are the
    server's; ``extra``: what else the client reported (``attempts`` …); ``round``
    counts from 1.
    """

    client: str
    n: int
    ok: int | None
    failed: int | None
    wall_s: float
    cpu_s: float
    timed_out: bool
    stats: MockStats | None
    arrivals: list[tuple[float, str]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    round: int = 1

    @property
    def attempts(self) -> int:
        """Requests the server received (connects it refused are not among them)."""
        return self.stats.requests_total if self.stats else 0

    def outcome(self, kind: str) -> int:
        """How many attempts the server answered with ``kind`` (e.g. ``"ratelimit"``)."""
        return self.stats.outcomes.get(kind, 0) if self.stats else 0

    @property
    def succeeded(self) -> int:
        """Successes: the client's count, else the server's ``ok`` answers (an upper
        bound: an answer the client gave up on still counts)."""
        return self.ok if self.ok is not None else self.outcome("ok")

    @property
    def unfinished(self) -> int:
        """Requests neither succeeded nor failed (a run cut short)."""
        if self.ok is None or self.failed is None:
            return self.n - self.succeeded
        return self.n - self.ok - self.failed

    @property
    def failures(self) -> int:
        """Failed requests as the client counted them (0 when unknown)."""
        return self.failed or 0

    def ok_times(self) -> list[float]:
        """Arrival times (seconds since the first request) of attempts answered OK."""
        return [t for t, kind in self.arrivals if kind == "ok"]

    def describe_wall(self) -> str:
        """``"12.3"``, or ``"> 45 (cut: 1,234/4,000 done)"`` for a run cut short."""
        if self.error is not None:
            return "error"
        if self.timed_out:
            return f"> {self.wall_s:.0f} (cut: {self.succeeded:,}/{self.n:,} done)"
        return f"{self.wall_s:.1f}"


def median_or_none(values: Sequence[float]) -> float | None:
    """The median, or None for no values."""
    return statistics.median(values) if values else None


def _read_server(
    server: MockServerProcess, family: Family
) -> tuple[MockStats, list[tuple[float, str]]]:
    """The server's stats and arrivals; a client that finished (or gave up) during a
    refuse outage must wait for the listener to come back to read them."""
    last_end = max((p.end_s for p in family.server.phases), default=0.0)
    give_up = time.monotonic() + last_end + 10.0
    while True:
        try:
            stats = server.stats
            return stats, server.arrivals() if family.server.max_arrivals else []
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.2)  # the outage ends on the server's schedule; nothing to wait on


@contextmanager
def _gateway(family: Family, server: MockServerProcess) -> Iterator[_nginx.Front | None]:
    """nginx of the family's kind in front of ``server``, or None (no gateway)."""
    if family.gateway is None:
        yield None
        return
    port = int(server.base_url.rsplit(":", 1)[1].split("/")[0])
    with _nginx.front(family.gateway, port) as gateway:
        yield gateway


def _one(family: Family, client: str, log: TextIO | None) -> ServerRun:
    scenario = _harness.Scenario(family.n, family.settings.concurrency, family.latency_s, 0)
    with MockServerProcess(family.server) as server:
        with _gateway(family, server) as gateway:
            try:
                out = _harness.run_child(
                    client,
                    server.base_url if gateway is None else gateway.base_url,
                    scenario,
                    options=family.settings.options(),
                    deadline_s=family.deadline_s,
                )
            except _harness.ChildError as exc:
                return ServerRun(
                    client, family.n, None, None, 0.0, 0.0, False, None, error=str(exc)
                )
        stats, arrivals = _read_server(server, family)
    if gateway is not None and gateway.answers:
        # Relative to the mock's timeline (its first request ~ nginx's first answer
        # minus one latency), so phases line up.
        g0 = gateway.answers[0][0] - family.latency_s
        out["gateway"] = [(t - g0, status) for t, status in gateway.answers]
    t0 = stats.timeline_started_at or 0.0
    known = {"client", "ok", "failed", "warmup_failed", "wall_s", "cpu_user_s", "cpu_sys_s"}
    run = ServerRun(
        client=client,
        n=family.n,
        ok=out["ok"],
        failed=out["failed"],
        wall_s=out["wall_s"],
        cpu_s=out["cpu_user_s"] + out["cpu_sys_s"],
        timed_out=bool(out.get("timed_out")),
        stats=stats,
        arrivals=[(t - t0, kind) for t, kind in arrivals],
        extra={k: v for k, v in out.items() if k not in known and not k.startswith("maxrss")},
    )
    if log is not None:
        print(
            f"  {family.name:<13} {client:<18} wall {run.describe_wall():>8} s  "
            f"ok={run.succeeded} failed={run.failures} attempts={run.attempts} "
            f"outcomes={dict(stats.outcomes)}",
            file=log,
            flush=True,
        )
    return run


def run_server_family(
    family: Family, rounds: int, log: TextIO | None = None
) -> dict[str, list[ServerRun]]:
    """Every row ``rounds`` times (order rotating per round); a row that was cut short
    or failed is not run again. Returns the runs per row, in the family's row order."""
    runs: dict[str, list[ServerRun]] = {c: [] for c in family.rows}
    rows = list(family.rows)
    for r in range(rounds):
        for client in rows[r % len(rows) :] + rows[: r % len(rows)]:
            done = runs[client]
            if done and (done[-1].timed_out or done[-1].error):
                continue
            done.append(dataclasses.replace(_one(family, client, log), round=r + 1))
    return runs
