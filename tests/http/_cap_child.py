"""Child process of test_size_cap: one request to argv[1] with the default cap; prints
its outcome and the peak RSS, as JSON on stdout (the parent's server sends the body)."""

import json
import resource
import sys

import trio

from minimallm import MinimaLlmConfig, MinimaLlmFailure, MinimaLlmRequest, OpenAIMinimaLlm


async def main() -> None:
    cfg = MinimaLlmConfig(base_url=sys.argv[1], model="m", rpm=0, max_attempts=6, timeout_s=60)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    async with OpenAIMinimaLlm(cfg) as backend:
        result = await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "x"}]))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    failure = result if isinstance(result, MinimaLlmFailure) else None
    print(
        json.dumps(
            {
                "error_type": failure.error_type if failure else None,
                "message": failure.message if failure else None,
                "attempts": failure.attempts if failure else None,
                "rss_before": before,
                "rss_peak": peak,
                "cap": cfg.max_response_bytes,
            }
        )
    )


trio.run(main)
