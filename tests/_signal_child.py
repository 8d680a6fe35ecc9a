"""Child process of test_signals: a cached batch from asyncio or sync code, to be
interrupted by a signal. Prints ``started`` once the backend is built."""

import asyncio
import sys

import minimallm
from minimallm import BatchConfig, MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm

url, cache_dir, mode = sys.argv[1], sys.argv[2], sys.argv[3]
if "sigterm" in sys.argv[4:]:
    minimallm.install_sigterm_handler()
cfg = MinimaLlmConfig(
    base_url=url,
    model="m",
    rpm=0,
    max_outstanding=8,
    cache_dir=cache_dir,
    batch=BatchConfig(num_workers=8, heartbeat_s=0),
)
backend = OpenAIMinimaLlm(cfg)
reqs = [MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"p{i}"}]) for i in range(100_000)]


async def main() -> None:
    print("started", flush=True)
    async with backend:  # the documented shape: aclose() runs during the cancellation
        await backend.run_batched(reqs, progress=lambda line: None)


try:
    if mode == "asyncio":
        asyncio.run(main())
    else:
        print("started", flush=True)
        try:
            backend.run_batched_sync(reqs, progress=lambda line: None)
        finally:
            backend.close_sync()
except KeyboardInterrupt:
    print("interrupted", flush=True)
    sys.exit(130)
