"""Six processes hammer one cache directory at once: no lock error, no lost answer."""

from __future__ import annotations

import json
import multiprocessing
import queue
import random
from pathlib import Path
from typing import Any

from minimallm._cache.store import PromptCache

N_PROCS = 6
N_KEYS = 300  # shared by every process: writes and reads overlap heavily
ROUNDS = 150  # per process; bounded by count: 1-2 s of hammering each on 2 cores
BATCH = 25
READS = 60
# fork starts six children in milliseconds; spawn (re-importing pytest in each) costs
# seconds on a loaded 2-core machine. The cache is opened only after the start.
START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"


def _value(key: str, proc: int, rnd: int) -> str:
    return f"{key}|p{proc}|r{rnd}"


def _hammer(cache_dir: str, proc: int, start: Any, out: Any) -> None:
    """One process: open at the same moment as the others, then write and read."""
    rng = random.Random(proc)
    written: list[tuple[str, str]] = []
    try:
        start.wait(30)
        with PromptCache.open(cache_dir) as cache:
            for rnd in range(ROUNDS):
                keys = rng.sample(range(N_KEYS), BATCH)
                rows = []
                for k in keys:
                    key, text = f"k{k}", _value(f"k{k}", proc, rnd)
                    # A body of a few hundred bytes, so WAL checkpoints happen mid-run.
                    rows.append((key, text, json.dumps({"text": text, "pad": "x" * 300})))
                cache.put_many(rows)
                written.extend((key, text) for key, text, _ in rows)
                # Read-your-writes: what we just wrote is there (ours or a later one).
                mine = cache.get_many([key for key, _, _ in rows])
                assert set(mine) == {key for key, _, _ in rows}, "a written row is missing"
                asked = [f"k{k}" for k in rng.sample(range(N_KEYS), READS)]
                for key, answer in cache.get_many(asked).items():
                    assert answer.text.startswith(key + "|"), (key, answer.text)
                    assert answer.raw_json is not None
                    assert json.loads(answer.raw_json)["text"] == answer.text
        out.put(("ok", proc, written))
    except BaseException as exc:  # everything goes back to the test, nothing is hidden
        out.put(("error", proc, f"{type(exc).__name__}: {exc}"))
        raise


def test_six_processes_hammer_one_cache(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context(START_METHOD)
    start = ctx.Event()
    out = ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(str(tmp_path / "cache"), i, start, out))
        for i in range(N_PROCS)
    ]
    for p in procs:
        p.start()
    start.set()
    reports = []
    try:
        for _ in range(N_PROCS):  # drain before join: a full pipe would block the child
            reports.append(out.get(timeout=60))
    except queue.Empty:
        pass
    for p in procs:
        p.join(timeout=30)
    alive = [p.pid for p in procs if p.is_alive()]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()

    assert alive == [], f"processes did not end: {alive}"
    errors = [r for r in reports if r[0] != "ok"]
    assert errors == []
    assert sorted(r[1] for r in reports) == list(range(N_PROCS))
    assert [p.exitcode for p in procs] == [0] * N_PROCS

    written: dict[str, set[str]] = {}
    for _, _, pairs in reports:
        for key, text in pairs:
            written.setdefault(key, set()).add(text)
    assert sum(len(v) for v in written.values()) == N_PROCS * ROUNDS * BATCH
    with PromptCache.open(tmp_path / "cache") as cache:
        final = cache.get_many(list(written))
    assert final.keys() == written.keys()
    for key, answer in final.items():
        assert answer.text in written[key], (key, answer.text)
