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
    "DEFAULT_FAMILY_NAMES",
    "FAMILY_NAMES",
    "GATEWAY_FAMILY_NAMES",
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
    ``cached`` and ``memory`` (minimallm only). ``n``: requests per run. ``gateway``:
    a real nginx of that kind between the clients and the mock (``benchmarks/_nginx.py``).
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
    gateway: Literal["limit_req", "limit_conn", "proxy"] | None = None

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
        *_gateway_families(size, lat),
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


DAILY_BUDGET = (
    ("x-ratelimit-limit-requests", "10000"),
    ("x-ratelimit-remaining-requests", "9990"),
    ("x-ratelimit-reset-requests", "23h59m0s"),
)
"""A daily budget announced like a per-minute one: 10,000 a day, 9,990 left."""
GARBAGE_HEADERS = (
    ("x-ratelimit-limit-requests", "1h1h1h"),
    ("x-ratelimit-remaining-requests", "-3"),
    ("x-ratelimit-reset-requests", "1h1h1h"),
    ("retry-after", "soon"),
)
"""Rate headers nobody can read."""


def _gateway_families(size: Any, lat: float) -> list[Family]:
    """Real nginx in front of the mock, and mock servers with other manners (issue 16)."""
    pushback = Settings(128, max_attempts=10, timeout_s=10.0)
    plain = Settings(64, max_attempts=6, timeout_s=10.0)

    def server(latency_s: float = size(lat, 0.02), **kw: Any) -> MockServerConfig:
        return MockServerConfig(
            latency_s=latency_s, max_records=0, max_arrivals=ARRIVALS_KEPT, **kw
        )

    def bucket(**kw: Any) -> MockServerConfig:
        return server(rate_limit_per_s=200.0, burst=20, **kw)

    return [
        Family(
            "nginx-limit-req", "nginx limit_req 100 r/s (burst 20 nodelay) over the mock",
            "server", PUSHBACK_ROWS, size(1000, 100), pushback, server(),
            rounds=size(2, 1), deadline_s=size(45.0, 5.0), gateway="limit_req",
            what="goodput ÷ 100/s; nginx's 429s (no Retry-After); failures per run",
        ),
        Family(
            "nginx-limit-conn", "nginx limit_conn 16 over the mock (100 ms)",
            "server", PUSHBACK_ROWS, size(1600, 100), pushback, server(),
            deadline_s=size(45.0, 5.0), gateway="limit_conn",
            what="goodput ÷ 160/s (16 ÷ 100 ms); nginx's 429s; failures",
        ),
        Family(
            "nginx-down-10", "nginx proxy, upstream stopped for 10 s mid-run",
            "server", PUSHBACK_ROWS, size(2000, 400), Settings(32, max_attempts=6, timeout_s=10.0),
            server(phases=(Outage(size(3.0, 0.5), size(10.0, 1.0), "refuse"),), latency_s=lat),
            deadline_s=size(60.0, 6.0), gateway="proxy",
            what="failures; s from the upstream's return to the first success, to 90 %",
        ),
        Family(
            "nginx-down-40", "nginx proxy, upstream stopped for 40 s mid-run",
            "server", PUSHBACK_ROWS, size(2000, 400), Settings(32, max_attempts=6, timeout_s=10.0),
            server(phases=(Outage(size(3.0, 0.5), size(40.0, 2.0), "refuse"),), latency_s=lat),
            deadline_s=size(90.0, 8.0), gateway="proxy",
            what="failures; s from the upstream's return to the first success, to 90 %",
        ),
        Family(
            "bucket-retry-after", "Token bucket 200/s, burst 20, 429 + Retry-After only",
            "server", PUSHBACK_ROWS, size(4000, 150), pushback, bucket(retry_after_only=True),
            deadline_s=size(35.0, 4.0),
            what="goodput ÷ 200/s; 429s; failures (no x-ratelimit-*, whole-second Retry-After)",
        ),
        Family(
            "bucket-bare", "Token bucket 200/s, burst 20, bare 429s",
            "server", PUSHBACK_ROWS, size(4000, 150), pushback, bucket(rate_headers=False),
            deadline_s=size(35.0, 4.0),
            what="goodput ÷ 200/s; 429s; failures (no header at all)",
        ),
        Family(
            "random-429", "Half the answers 429 at random, whatever the load",
            "server", PUSHBACK_ROWS, size(2000, 100), plain,
            server(fault_rates={"429": 0.5}, retry_after_s=None),
            deadline_s=size(60.0, 5.0),
            what="goodput/s; 429s; failures (MAX_ATTEMPTS 6; no Retry-After)",
        ),
        Family(
            "every-other-429", "Every other answer 429 (no Retry-After), whatever the load",
            "server", PUSHBACK_ROWS, size(2000, 100), plain, server(refuse_every=2),
            deadline_s=size(60.0, 5.0),
            what="goodput/s; 429s; failures (MAX_ATTEMPTS 6)",
        ),
        Family(
            "litellm-window", "LiteLLM-like limit: 100 per 5-s calendar window, "
            "hint in llm_provider-retry-after",
            "server", PUSHBACK_ROWS, size(500, 60), pushback,
            server(window_limit=size(100, 20), window_s=5.0),
            deadline_s=size(45.0, 8.0),
            what="goodput ÷ 20/s (100 per 5 s); 429s; failures",
        ),
        Family(
            "daily-budget", "x-ratelimit-* announcing 10,000/day, 9,990 left, reset 23h59m",
            "server", PUSHBACK_ROWS, size(2000, 100), plain, server(extra_headers=DAILY_BUDGET),
            deadline_s=size(30.0, 4.0),
            what="goodput/s (the healthy ideal: 64 ÷ 100 ms = 640/s)",
        ),
        Family(
            "garbage-headers", "Unreadable rate headers (1h1h1h, -3, Retry-After: soon)",
            "server", PUSHBACK_ROWS, size(2000, 100), plain,
            server(extra_headers=GARBAGE_HEADERS),
            deadline_s=size(30.0, 4.0),
            what="goodput/s (the healthy ideal: 640/s)",
        ),
        Family(
            "quota", "Every answer 429 insufficient_quota (an account out of credit)",
            "server", PUSHBACK_ROWS, size(200, 20), plain,
            server(phases=(Storm(0.0, 86400.0, 429, None),), error_code="insufficient_quota"),
            deadline_s=size(40.0, 4.0),
            what="how long until the batch ends (cut at the deadline), failures",
        ),
        Family(
            "retry-after-day", "Every answer 429 with Retry-After: 86400",
            "server", PUSHBACK_ROWS, size(20, 5), plain,
            server(phases=(Storm(0.0, 86400.0, 429, 86400.0),)),
            deadline_s=size(40.0, 4.0),
            what="how long until the batch ends (cut at the deadline), failures",
        ),
        Family(
            "queueing", "A queueing server: 16 slots, never refuses, latency rises with load",
            "server", PUSHBACK_ROWS, size(2000, 100), Settings(128, max_attempts=6, timeout_s=10.0),
            server(capacity=16, capacity_mode="queue"),
            deadline_s=size(45.0, 4.0),
            what="goodput ÷ 160/s (16 slots ÷ 100 ms); failures",
        ),
    ]  # fmt: skip


FAMILY_NAMES: tuple[str, ...] = tuple(families())

GATEWAY_FAMILY_NAMES: tuple[str, ...] = tuple(
    f.name for f in _gateway_families(lambda v, q: v, 0.1)
)
"""The families of real gateways and odd servers (issue 16): ~30 min on 2 cores, so
``python -m benchmarks`` runs them only with ``--all`` or by name (``--family``)."""

DEFAULT_FAMILY_NAMES: tuple[str, ...] = tuple(
    name for name in FAMILY_NAMES if name not in GATEWAY_FAMILY_NAMES
)
"""What ``python -m benchmarks`` runs by default (under 10 min on 2 cores)."""
"""Every family name, in running order."""

MILLION = 1_000_000
"""The streamed memory row's size (quick: ``MILLION_QUICK``)."""
MILLION_QUICK = 5_000
