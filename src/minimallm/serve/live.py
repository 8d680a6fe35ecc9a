"""The live line of ``minimallm serve`` on stderr: requests per second, cache hits,
in flight, errors, and which limit holds the backend back now.

One line every ``every_s`` seconds while something happens (an idle server stays
quiet), and a last one when the server stops.
"""

from __future__ import annotations

from typing import TextIO

import trio

from minimallm._backend import OpenAIMinimaLlm
from minimallm._errors import MinimaLlmError
from minimallm.serve.server import ServeStats

__all__ = ["binding_text", "format_live", "report_live"]

PREFIX = "minimallm serve:"


def format_live(stats: ServeStats, rate_per_s: float, binding: str | None) -> str:
    """``minimallm serve: 1234 requests (52.1/s), 800 from cache, 3 in flight, 2 errors;
    held back by ...``."""
    line = (
        f"{PREFIX} {stats.requests} requests ({rate_per_s:.1f}/s), "
        f"{stats.cache_hits} from cache, {stats.in_flight} in flight, {stats.errors} errors"
    )
    if binding:
        line += f"; held back by {binding}"
    return line


async def binding_text(backend: OpenAIMinimaLlm) -> str | None:
    """Which limit binds the backend now (the runtime's own words), None when nothing
    does or the runtime is not running."""
    try:
        runtime = await backend._runtime_here()
        binding = runtime.statistics().binding
    except (MinimaLlmError, AttributeError):
        return None
    return None if binding is None else binding.text


async def report_live(
    stats: ServeStats, backend: OpenAIMinimaLlm, err: TextIO, *, every_s: float
) -> None:
    """Print the live line every ``every_s`` seconds while requests come or are in
    flight; runs until cancelled."""
    last_requests = stats.requests
    last_at = trio.current_time()
    while True:
        await trio.sleep(every_s)
        now = trio.current_time()
        if stats.requests == last_requests and stats.in_flight == 0:
            last_at = now
            continue
        rate = (stats.requests - last_requests) / max(now - last_at, 1e-9)
        last_requests, last_at = stats.requests, now
        print(format_live(stats, rate, await binding_text(backend)), file=err, flush=True)
