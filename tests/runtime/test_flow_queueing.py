"""A queueing server (llama.cpp: never refuses, latency rises with load), in virtual
time: what binds is told right, and its timeouts are not an outage (issue 16)."""

from __future__ import annotations

from typing import Any

import pytest

from minimallm import BatchConfig, BatchProgress, MinimaLlmFailure
from pushback import CapacityServer, QueueServer, run_virtual_batch


def run(server: QueueServer, n: int, **cfg: Any) -> tuple[list[Any], float, list[BatchProgress]]:
    ticks: list[BatchProgress] = []
    batch = BatchConfig(heartbeat_s=1.0, num_workers=256, max_failures=None)
    results, wall = run_virtual_batch(server, n, progress=ticks.append, batch=batch, **cfg)
    assert isinstance(results, list)
    return results, wall, ticks


def steady(ticks: list[BatchProgress], after_s: float) -> list[str | None]:
    """What bound at each tick after ``after_s`` while the batch still had work queued."""
    return [t.binding for t in ticks if t.kind == "tick" and t.elapsed_s >= after_s
            and t.total is not None and t.total - t.done > 256]  # fmt: skip


def test_a_queueing_server_is_told_as_the_servers_queue_not_max_outstanding() -> None:
    # 16 slots x 0.1 s: 160/s; 128 outstanding wait 0.8 s, and raising it would not help
    results, _, ticks = run(QueueServer(16, 0.1), 2000, max_outstanding=128)
    assert not any(isinstance(r, MinimaLlmFailure) for r in results)
    bound = steady(ticks, 2.0)
    assert bound, ticks
    assert all(b is not None and b.startswith("server's queue") for b in bound), bound


def test_a_slow_queueing_server_under_the_rpm_cap_is_not_blamed_on_rpm() -> None:
    # 4 slots x 1 s: 4/s, under RPM 600 (10/s): the server's queue holds the client back
    results, _, ticks = run(QueueServer(4, 1.0), 400, max_outstanding=32, rpm=600)
    assert not any(isinstance(r, MinimaLlmFailure) for r in results)
    bound = [t.binding for t in ticks if t.kind == "tick" and 20.0 <= t.elapsed_s <= 80.0]
    assert bound
    assert all(b is not None and b.startswith("server's queue") for b in bound), bound


def test_an_rpm_cap_below_what_the_server_serves_is_still_the_rpm_cap() -> None:
    # RPM 6000 (100/s) under the server's 160/s: nothing queues at the server
    results, _, ticks = run(QueueServer(16, 0.1), 1000, max_outstanding=128, rpm=6000)
    assert not any(isinstance(r, MinimaLlmFailure) for r in results)
    bound = steady(ticks, 2.0)
    assert bound
    assert all(b is not None and b.startswith("RPM cap") for b in bound), bound


def test_timeouts_of_a_busy_server_are_not_an_outage() -> None:
    # TIMEOUT_S 0.5 below the 0.8 s queue wait: the server answers others meanwhile
    server = QueueServer(16, 0.1)
    results, wall, ticks = run(server, 2000, max_outstanding=128, timeout_s=0.5)
    said = [t.binding for t in ticks if t.binding is not None]
    assert not any(b.startswith("outage") for b in said), said
    assert not any(isinstance(r, MinimaLlmFailure) for r in results)
    # the limit drops to what the server serves within TIMEOUT_S: ~all of its 160/s
    assert wall <= 2000 / 160 * 1.15, wall


@pytest.mark.parametrize("sigma", [0.5, 1.0, 1.5])
@pytest.mark.parametrize("seed", range(3))
def test_a_server_whose_latencies_merely_vary_is_not_called_a_queue(
    sigma: float, seed: int
) -> None:
    # no queue, lognormal latencies (sigma 1.5: p90 / p10 = 47): MAX_OUTSTANDING binds
    server = CapacityServer(10_000, median=0.5, sigma=sigma, seed=seed)
    ticks: list[BatchProgress] = []
    batch = BatchConfig(heartbeat_s=1.0, num_workers=64, max_failures=None)
    run_virtual_batch(server, 1500, progress=ticks.append, max_outstanding=32, batch=batch)
    said = {t.binding for t in ticks if t.kind == "tick"} - {None}
    assert said == {"MAX_OUTSTANDING 32"}, said
