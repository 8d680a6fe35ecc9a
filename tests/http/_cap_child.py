"""Child process of test_size_cap: one request to argv[1] with the default cap; prints
its outcome and the peak RSS, as JSON on stdout (the parent's server sends the body)."""

import json
import sys

import trio

from minimallm import MinimaLlmConfig, MinimaLlmFailure, MinimaLlmRequest, OpenAIMinimaLlm


def _peak_rss() -> int:
    """This process's own peak RSS in bytes (VmHWM). Not ``ru_maxrss``: Linux carries
    that across exec, so the child would report the parent's (pytest's) peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def main() -> None:
    cfg = MinimaLlmConfig(base_url=sys.argv[1], model="m", rpm=0, max_attempts=6, timeout_s=60)
    before = _peak_rss()
    async with OpenAIMinimaLlm(cfg) as backend:
        result = await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "x"}]))
    peak = _peak_rss()
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
