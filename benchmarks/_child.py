"""One measured client run, in its own process (started by ``_harness.run_child``).

``python -m benchmarks._child '<json spec>'`` (from the repository root) opens the
client (with the spec's ``options``, if any), sends a warm-up, lets the client
``prepare`` the measured ids if it can (e.g. build the request list), then times the
measured requests and prints one JSON line on stdout: counts, wall seconds, this
process's user and system CPU seconds over the timed part only (all threads, so
minimallm's bridge thread is included), its peak RSS (KiB) after the warm-up, after
``prepare`` (just before the timed part) and at the end, and whatever extra counts the
client reports (e.g. ``cached``, ``attempts``). With ``census`` (trio clients only), it
also counts the live trio tasks every 0.02 s and the live coroutine objects once, 0.05 s
into the timed part, to show that nothing is made per request up front.

With ``deadline_s``, the timed part is cancelled after that many seconds: the line then
says ``"timed_out": true`` and carries the client's ``progress()`` counts (or none).
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import importlib
import json
import resource
import sys
import time
import types
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from benchmarks.clients import CLIENTS

CENSUS_PERIOD_S = 0.02
"""How often the census counts trio tasks (seconds)."""

CENSUS_COROUTINES_AT_S = 0.05
"""When (seconds into the timed part) the census counts coroutine objects once: early,
so the transient list ``gc.get_objects`` builds stays far below the final peak RSS."""


def _cpu() -> tuple[float, float]:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


def _maxrss_kib() -> int:
    """Peak RSS of this process, KiB. ``VmHWM`` where Linux has it: ``ru_maxrss`` of a
    process started with vfork + exec (as ``subprocess`` does) starts at its parent's
    peak, so small clients would all show the orchestrator's size."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _count_tasks(task: trio.lowlevel.Task) -> int:
    return 1 + sum(_count_tasks(t) for n in task.child_nurseries for t in n.child_tasks)


class _Census:
    """Peak live trio tasks, and live coroutine objects at one early moment."""

    def __init__(self) -> None:
        self.peak_tasks = 0
        self.coroutines: int | None = None

    async def run(self) -> None:
        root = trio.lowlevel.current_root_task()
        assert root is not None
        start = trio.current_time()
        while True:
            self.peak_tasks = max(self.peak_tasks, _count_tasks(root))
            if self.coroutines is None and trio.current_time() - start >= CENSUS_COROUTINES_AT_S:
                self.coroutines = sum(isinstance(o, types.CoroutineType) for o in gc.get_objects())
            await trio.sleep(CENSUS_PERIOD_S)


async def _timed_run(client: Any, ids: range, census: _Census | None) -> Any:
    if census is None:
        return await client.run(ids)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(census.run)
        out = await client.run(ids)
        nursery.cancel_scope.cancel()
    return out


def _split(out: tuple[Any, ...]) -> tuple[int, int, dict[str, Any]]:
    """``run`` returns ``(ok, failed)`` or ``(ok, failed, {extra counts})``."""
    return out[0], out[1], (out[2] if len(out) > 2 else {})


async def _within(deadline_s: float | None, loop: str, run: Awaitable[Any]) -> Any:
    """``await run``, or None once ``deadline_s`` seconds have passed (cancelled)."""
    if deadline_s is None:
        return await run
    if loop == "trio":
        with trio.move_on_after(deadline_s):
            return await run
        return None
    try:
        async with asyncio.timeout(deadline_s):
            return await run
    except TimeoutError:
        return None


def _cut_short(client: Any) -> tuple[int | None, int | None, dict[str, Any]]:
    progress = getattr(client, "progress", None)
    counts = dict(progress()) if progress is not None else {}
    return counts.pop("ok", None), counts.pop("failed", None), {**counts, "timed_out": True}


async def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    module = importlib.import_module("benchmarks.clients." + CLIENTS[spec["client"]].module)
    n, warmup, concurrency = spec["n"], spec["warmup"], spec["concurrency"]
    options = spec.get("options") or {}
    census = _Census() if spec.get("census") else None
    async with module.open_client(spec["base_url"], concurrency, **options) as client:
        warm_ok, warm_failed = 0, 0
        if warmup:
            warm_ok, warm_failed, _ = _split(await client.run(range(n, n + warmup)))
        maxrss_warm = _maxrss_kib()
        prepare = getattr(client, "prepare", None)
        if prepare is not None:
            prepare(range(n))
        maxrss_before = _maxrss_kib()
        profiler = cProfile.Profile() if spec.get("profile") else None
        user0, sys0 = _cpu()
        t0 = time.perf_counter()
        if profiler is not None:
            profiler.enable()
        out = await _within(
            spec.get("deadline_s"), module.LOOP, _timed_run(client, range(n), census)
        )
        ok, failed, extra = _cut_short(client) if out is None else _split(out)
        if profiler is not None:
            profiler.disable()
        wall = time.perf_counter() - t0
        user1, sys1 = _cpu()
    if profiler is not None:
        profiler.dump_stats(spec["profile"])
    result = {
        "client": spec["client"],
        "ok": ok,
        "failed": failed,
        "warmup_failed": warm_failed + (warmup - warm_ok - warm_failed),
        "wall_s": wall,
        "cpu_user_s": user1 - user0,
        "cpu_sys_s": sys1 - sys0,
        "maxrss_warm_kib": maxrss_warm,
        "maxrss_before_kib": maxrss_before,
        "maxrss_kib": _maxrss_kib(),
        **extra,
    }
    if census is not None:
        result["peak_tasks"] = census.peak_tasks
        result["coroutines"] = census.coroutines
    return result


def main(argv: list[str]) -> None:
    """Run the spec given as one JSON argument; print the result as one JSON line."""
    spec = json.loads(argv[0])
    loop = importlib.import_module("benchmarks.clients." + CLIENTS[spec["client"]].module).LOOP
    fn: Callable[[], Awaitable[dict[str, Any]]] = lambda: _measure(spec)  # noqa: E731
    if loop == "trio":
        result = trio.run(fn)
    elif loop == "asyncio":
        if spec.get("census"):
            raise SystemExit("census needs a trio client")
        result = asyncio.run(fn())  # type: ignore[arg-type]
    else:
        raise SystemExit(f"unknown LOOP {loop!r}")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
