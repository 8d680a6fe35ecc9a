"""One measured client run, in its own process (started by ``_harness.run_child``).

``python benchmarks/_child.py '<json spec>'`` opens the client, sends a warm-up, then
times the measured requests and prints one JSON line on stdout: counts, wall seconds,
this process's user and system CPU seconds over the timed part only (all threads,
so minimallm's bridge thread is included) and its peak RSS (KiB, whole life).
"""

from __future__ import annotations

import asyncio
import cProfile
import importlib
import json
import resource
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from clients import CLIENTS


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    module = importlib.import_module("clients." + CLIENTS[spec["client"]].module)
    n, warmup, concurrency = spec["n"], spec["warmup"], spec["concurrency"]
    async with module.open_client(spec["base_url"], concurrency) as client:
        warm_ok, warm_failed = await client.run(range(n, n + warmup))
        profiler = cProfile.Profile() if spec.get("profile") else None
        user0, sys0 = _cpu()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        ok, failed = await client.run(range(n))
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - t0
        user1, sys1 = _cpu()
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    return {
        "client": spec["client"],
        "ok": ok,
        "failed": failed,
        "warmup_failed": warm_failed + (warmup - warm_ok - warm_failed),
        "wall_s": wall,
        "cpu_user_s": user1 - user0,
        "cpu_sys_s": sys1 - sys0,
        "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    }


def main(argv: list[str]) -> None:
    """Run the spec given as one JSON argument; print the result as one JSON line."""
    spec = json.loads(argv[0])
    loop = importlib.import_module("clients." + CLIENTS[spec["client"]].module).LOOP
    fn: Callable[[], Awaitable[dict[str, Any]]] = lambda: _measure(spec)  # noqa: E731
    if loop == "trio":
        result = trio.run(fn)
    elif loop == "asyncio":
        result = asyncio.run(fn())  # type: ignore[arg-type]
    else:
        raise SystemExit(f"unknown LOOP {loop!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
