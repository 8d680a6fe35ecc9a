"""Child process of test_cache_processes: a batch, or answers one by one with times."""

import sys
import time

from minimallm import (
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)

url, cache_dir, first, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
cfg = MinimaLlmConfig(
    base_url=url,
    model="m",
    rpm=0,
    max_outstanding=8,
    cache_dir=cache_dir,
    batch=BatchConfig(num_workers=8, heartbeat_s=0),
)
backend = OpenAIMinimaLlm(cfg)
reqs = [
    MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"p{i}"}])
    for i in range(first, first + count)
]
if len(sys.argv) > 5:  # one by one, reporting each answer as it arrives
    for r in reqs:
        out = backend.generate_sync(r)
        assert isinstance(out, MinimaLlmResponse), out
        print("done", r.request_id, time.monotonic(), flush=True)
else:
    results = backend.run_batched_sync(reqs, progress=lambda line: None)
    bad = [
        r
        for r in results
        if not (isinstance(r, MinimaLlmResponse) and r.text == "echo: p" + r.request_id[2:])
    ]
    print("ok", len(results), "cached", sum(r.cached for r in results), "bad", len(bad), flush=True)
    sys.exit(1 if bad else 0)
