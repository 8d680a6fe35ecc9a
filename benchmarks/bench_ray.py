"""A Ray Data pipeline through minimallm, next to the same rows without Ray.

    python benchmarks/bench_ray.py                       # 20,000 rows, 2 actors
    python benchmarks/bench_ray.py --rows 2000           # a quicker look

Needs the ``[ray]`` extra. Starts the mock server in its own process (latency
``--latency`` s, 2 % faults: 1 % HTTP 500, 0.5 % 503, 0.5 % connection reset), then,
each with a fresh prompt cache:

1. **ray**: a local Ray pinned to 127.0.0.1 (``num_cpus=2``), ``ds.map_batches(
   MinimaLlmMapper, compute=ActorPoolStrategy(size=--actors), batch_format="pandas")``
   over ``--rows`` rows; counts rows answered, rows with an error column, and checks
   that no task failed (``take_all`` would raise);
2. **ray rerun**: the same pipeline again on the same cache: the upstream's request
   count must not move;
3. **no ray**: the same rows with ``run_batched_sync`` in this process.

Reports each wall and the upstream's requests; RPM is off (the mock does not limit),
MAX_OUTSTANDING ``--max-outstanding`` per actor, and twice that for the run without
Ray (the same total in flight). Exit status 1 when a check fails.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from minimallm import MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm
from minimallm.mock import MockServerConfig, MockServerProcess
from minimallm.ray import MinimaLlmMapper


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--actors", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--latency", type=float, default=0.02, help="seconds")
    parser.add_argument("--max-outstanding", type=int, default=32, help="per actor")
    args = parser.parse_args(argv)
    # Before Ray is imported: the node's address is then 127.0.0.1 and Ray's servers bind
    # it (ray.init(_node_ip_address="127.0.0.1") alone resolves to the host's address).
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    import ray.data

    import ray

    faults = {"500": 0.01, "503": 0.005, "reset": 0.005}
    mock_config = MockServerConfig(latency_s=args.latency, fault_rates=faults, max_records=0)
    prompts = [f"Row {i}: is this passage about tides?" for i in range(args.rows)]
    with tempfile.TemporaryDirectory() as tmp, MockServerProcess(mock_config) as mock:
        settings = {
            "OPENAI_BASE_URL": mock.base_url,
            "OPENAI_MODEL": "mock-model",
            "RPM": "0",
            "MAX_OUTSTANDING": str(args.max_outstanding),
            "BASE_BACKOFF_S": "0.05",
            "MAX_BACKOFF_S": "0.5",
            "TIMEOUT_S": "10",
            "BATCH_HEARTBEAT_S": "0",
        }
        os.environ["OPENAI_API_KEY"] = "sk-bench"  # the actors read it from their environment
        ray.init(
            address="local",
            include_dashboard=False,
            num_cpus=2,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
        ray.data.DataContext.get_current().enable_progress_bars = False
        ds = ray.data.from_items([{"id": i, "prompt": p} for i, p in enumerate(prompts)])
        cache = str(Path(tmp) / "ray-cache")

        def pipeline() -> tuple[float, list[dict[str, Any]]]:
            t0 = time.perf_counter()
            rows = ds.map_batches(
                MinimaLlmMapper,
                fn_constructor_kwargs={
                    "id_column": "id",
                    "pool_size": args.actors,
                    "settings": {**settings, "CACHE_DIR": cache},
                },
                compute=ray.data.ActorPoolStrategy(size=args.actors),
                batch_size=args.batch_size,
                batch_format="pandas",
            ).take_all()
            return time.perf_counter() - t0, rows

        before = mock.stats.requests_total
        wall_ray, rows = pipeline()
        sent_ray = mock.stats.requests_total - before
        wall_rerun, again = pipeline()
        sent_rerun = mock.stats.requests_total - before - sent_ray
        ray.shutdown()

        env = {
            **os.environ,
            **settings,
            "CACHE_DIR": str(Path(tmp) / "plain-cache"),
            "MAX_OUTSTANDING": str(2 * args.max_outstanding),
            "BATCH_MAX_FAILURES": "",
        }
        backend = OpenAIMinimaLlm(MinimaLlmConfig.from_env(env))
        requests = [MinimaLlmRequest(str(i), [{"role": "user", "content": p}])
                    for i, p in enumerate(prompts)]  # fmt: skip
        t0 = time.perf_counter()
        results = backend.run_batched_sync(requests)
        wall_plain = time.perf_counter() - t0
        backend.close_sync()

    answered = sum(1 for r in rows if r["error_type"] is None)
    errors = sum(1 for r in rows if r["error_type"] is not None)
    ids_ok = sorted(r["id"] for r in rows) == list(range(args.rows))
    texts_ok = all(
        r["text"] == f"echo: {prompts[r['id']]}" for r in rows if r["error_type"] is None
    )
    rerun_cached = sum(1 for r in again if r["cached"])
    plain_failed = sum(1 for r in results if not hasattr(r, "text"))
    print(
        f"{args.rows} rows, 2 % faults (500 1 %, 503 0.5 %, reset 0.5 %), latency "
        f"{args.latency:g} s, {args.actors} actors x MAX_OUTSTANDING {args.max_outstanding}\n"
        f"  ray:        wall {wall_ray:6.1f} s, {answered} answered + {errors} error rows "
        f"= {answered + errors}, every id once: {ids_ok}, answers right: {texts_ok}, "
        f"upstream requests {sent_ray}\n"
        f"  ray rerun:  wall {wall_rerun:6.1f} s, {rerun_cached} from the cache, "
        f"upstream requests {sent_rerun}\n"
        f"  no ray:     wall {wall_plain:6.1f} s ({len(results)} results, {plain_failed} "
        f"failed), run_batched_sync with MAX_OUTSTANDING {2 * args.max_outstanding}\n"
        f"  ray / no ray wall: {wall_ray / wall_plain:.2f}"
    )
    good = ids_ok and texts_ok and answered + errors == args.rows and sent_rerun == errors
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
