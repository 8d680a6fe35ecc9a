"""The scenario families of ``python -m benchmarks``: one readable table.

Each family runs its rows (clients) against the project's mock server, each row in its
own process. Sizes are chosen so the full default run stays under 10 minutes on 2
cores; ``--quick`` shrinks everything to a smoke run of a few seconds per family.

Client settings (``Settings``) are what a user would set: MAX_OUTSTANDING (the
concurrency; ``run_batched`` gets ``num_workers`` twice that, the defaults' ratio),
RPM, MAX_ATTEMPTS and TIMEOUT_S.
minimallm keeps every other setting at its default (cooldown included); the peers get
the same attempts and per-attempt timeout.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from minimallm.mock import MockServerConfig, Outage, Storm

__all__ = [
    "FAMILY_NAMES",
    "HEALTHY_ROWS",
    "PUSHBACK_ROWS",
    "Family",
    "Settings",
    "families",
]

HEALTHY_ROWS = (
    "minimallm-trio",
    "minimallm-asyncio",
    "minimallm-batched",
    "aiohttp-asyncio",
    "aiohttp-retry",
    "openai-asyncio",
)
"""The healthy-path rows: every way to call minimallm, and the peers."""

PUSHBACK_ROWS = ("minimallm-batched", "aiohttp-retry", "openai-asyncio")
"""Rows against servers that push back: minimallm's batch runner and the two peers."""

ARRIVALS_KEPT = 2_000_000
"""Arrival stamps the mock keeps for the time-series families (far more than needed)."""


@dataclass(frozen=True, slots=True)
class Settings:
    """Client settings of one family: ``concurrency`` (MAX_OUTSTANDING), ``rpm`` (0: no
    pacing), ``max_attempts`` (0: until success), ``timeout_s`` per attempt (seconds)."""

    concurrency: int
    rpm: int = 0
    max_attempts: int = 6
    timeout_s: float = 60.0

    def options(self) -> dict[str, Any]:
        """The keyword options every settings-aware client's ``open_client`` takes."""
        return {"rpm": self.rpm, "max_attempts": self.max_attempts, "timeout_s": self.timeout_s}


@dataclass(frozen=True, slots=True)
class Family:
    """One scenario family.

    ``kind`` picks how it runs: ``healthy`` (one shared server, rows interleaved,
    medians of ``rounds``), ``server`` (a fresh server per run, so its buckets and
    timeline start afresh; a row cut short by ``deadline_s`` is not run again),
    ``cached`` and ``memory`` (minimallm only). ``n``: requests per run.
    """

    name: str
    title: str
    kind: Literal["healthy", "server", "cached", "memory"]
    rows: tuple[str, ...]
    n: int
    settings: Settings
    server: MockServerConfig = field(default_factory=MockServerConfig)
    rounds: int = 1
    deadline_s: float | None = None
    what: str = ""

    @property
    def latency_s(self) -> float:
        """The server's (median) latency, seconds."""
        return self.server.latency_s


def families(quick: bool = False) -> dict[str, Family]:
    """Every family, full size or ``quick`` (a smoke run), by name, in running order."""

    def size(full: Any, small: Any) -> Any:
        return small if quick else full

    lat = 0.1  # the server latency of most families, seconds
    table = [
        Family(
            "latency-bound", "Latency-bound: 100 ms server, 64 in flight", "healthy",
            HEALTHY_ROWS, size(1200, 100), Settings(size(64, 16)),
            MockServerConfig(latency_s=size(lat, 0.02), max_records=0), rounds=size(2, 1),
            what="efficiency = req/s ÷ ideal (concurrency ÷ latency)",
        ),
        Family(
            "overhead", "Overhead: latency 0, CPU per request", "healthy",
            HEALTHY_ROWS, size(3000, 100), Settings(size(64, 16)),
            MockServerConfig(max_records=0), rounds=size(2, 1),
            what="client CPU µs per request (user + system, all threads), ratio to aiohttp",
        ),
        Family(
            "pacing", "Pacing accuracy: RPM 3000, 50 ms server", "server",
            ("minimallm-batched", "aiohttp-retry"), size(1000, 60),
            Settings(64, rpm=size(3000, 6000)),
            MockServerConfig(latency_s=0.05, max_records=0, max_arrivals=ARRIVALS_KEPT),
            deadline_s=size(60.0, 4.0),
            what="sends/s ÷ RPM/60 over the run; most sends in any 1-s and 60-s window",
        ),
        Family(
            "rate-limited", "Rate-limited server: token bucket 200/s, burst 20", "server",
            PUSHBACK_ROWS, size(4000, 150), Settings(128, max_attempts=10, timeout_s=10.0),
            MockServerConfig(
                latency_s=size(lat, 0.02), rate_limit_per_s=200.0, burst=20,
                max_records=0, max_arrivals=ARRIVALS_KEPT,
            ),
            deadline_s=size(35.0, 4.0),
            what="goodput ÷ the server's rate; share of attempts answered 429; failures",
        ),
        Family(
            "capacity", "Concurrency-capped server: 32 slots, 429 above", "server",
            PUSHBACK_ROWS, size(3000, 150), Settings(64, max_attempts=10, timeout_s=10.0),
            MockServerConfig(
                latency_s=size(lat, 0.02), latency_dist="lognormal", latency_sigma=0.5,
                capacity=32, retry_after_s=1.0, max_records=0, max_arrivals=ARRIVALS_KEPT,
            ),
            deadline_s=size(30.0, 4.0),
            what="wall ÷ ideal, ideal = n * mean latency ÷ 32 slots",
        ),
        Family(
            "faults", "Random faults: 3% 500, 2% 503, 1% reset, 1% hang, 1% malformed", "server",
            PUSHBACK_ROWS, size(3000, 150), Settings(64, max_attempts=6, timeout_s=2.0),
            MockServerConfig(
                latency_s=size(lat, 0.02), max_records=0, max_arrivals=ARRIVALS_KEPT,
                fault_rates={"500": 0.03, "503": 0.02, "reset": 0.01, "hang": 0.01,
                             "malformed": 0.01},
            ),
            rounds=size(3, 1), deadline_s=size(20.0, 4.0),
            what="wall and failures, median of the rounds; TIMEOUT_S = 2",
        ),
        Family(
            "outage", "Outage: connections refused for 20 s mid-batch", "server",
            PUSHBACK_ROWS, size(2500, 800), Settings(64, max_attempts=6, timeout_s=10.0),
            MockServerConfig(
                latency_s=size(lat, 0.05), max_records=0, max_arrivals=ARRIVALS_KEPT,
                phases=(Outage(size(2.0, 0.2), size(20.0, 0.5), "refuse"),),
            ),
            deadline_s=size(60.0, 3.0),
            what="failures and wall with the default MAX_ATTEMPTS (6)",
        ),
        Family(
            "storm", "429 storm for 30 s, then recovery", "server",
            PUSHBACK_ROWS, size(8000, 2500), Settings(64, max_attempts=6, timeout_s=10.0),
            MockServerConfig(
                latency_s=size(lat, 0.05), max_records=0, max_arrivals=ARRIVALS_KEPT,
                phases=(Storm(size(3.0, 0.5), size(30.0, 1.0), 429, 1.0),),
            ),
            deadline_s=size(80.0, 6.0),
            what="seconds from the storm's end until throughput is back to ≥ 90 % of before",
        ),
        Family(
            "cached", "Fully cached rerun in a new process", "cached",
            ("minimallm-batched-cache",), size(20_000, 300), Settings(size(64, 8)),
            rounds=size(3, 1), what="cache hits per second over the whole batch",
        ),
        Family(
            "memory", "Memory: peak RSS of 100,000 and 1,000,000 requests", "memory",
            ("minimallm-batched", "minimallm-streamed"), size(100_000, 2_000),
            Settings(64), what="peak RSS of the client process (latency 0, no cache)",
        ),
    ]  # fmt: skip
    return {f.name: f for f in table}


FAMILY_NAMES: tuple[str, ...] = tuple(families())
"""Every family name, in running order."""

MILLION = 1_000_000
"""The streamed memory row's size (quick: ``MILLION_QUICK``)."""
MILLION_QUICK = 5_000
