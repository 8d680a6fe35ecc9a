"""A whole user's script, run as its own process by ``bench_core.py``.

    python benchmarks/_core_child.py CLIENT BASE_URL N CONCURRENCY RPM

``CLIENT`` is ``minimallm`` (the README's quick start: ``asyncio.run`` +
``await backend.run_batched(requests)``, MAX_OUTSTANDING = CONCURRENCY, RPM = RPM, every
other setting at its default) or ``aiohttp`` (the lean loop a user writes: an
``asyncio.Semaphore(CONCURRENCY)``-bounded ``asyncio.gather`` of aiohttp posts, JSON
parsed, the answer's text kept; connector limit = CONCURRENCY; RPM ignored) or
``aiohttp-pool`` (the same posts from CONCURRENCY worker tasks pulling ids from one
iterator: no task per request, so its memory is the texts and little else). Each keeps
all N results in a list until the end, then print one JSON line: answers received,
answers whose text is the mock's, and this process's peak RSS (``VmHWM``, KiB; the
parent reads the CPU time from ``os.wait4``, so imports and start-up count).

Deliberately imports nothing from ``benchmarks`` (the process is what a user runs).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

MODEL = "mock-model"


def _vmhwm_kib() -> int:
    """Peak RSS of this process (``ru_maxrss`` would start at the parent's peak)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return 0


async def _minimallm(base_url: str, n: int, concurrency: int, rpm: int) -> list[Any]:
    from minimallm import MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm

    config = MinimaLlmConfig(base_url=base_url, model=MODEL, max_outstanding=concurrency, rpm=rpm)
    backend = OpenAIMinimaLlm(config)
    requests = [
        MinimaLlmRequest(
            request_id=f"q{i}", messages=[{"role": "user", "content": f"question {i}"}]
        )
        for i in range(n)
    ]
    results = await backend.run_batched(requests)
    await backend.aclose()
    return results


async def _aiohttp(base_url: str, n: int, concurrency: int, pool: bool) -> list[Any]:
    import aiohttp

    url = base_url.rstrip("/") + "/chat/completions"
    gate = asyncio.Semaphore(concurrency)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(i: int) -> str | None:
            body = {"model": MODEL, "messages": [{"role": "user", "content": f"question {i}"}]}
            try:
                async with session.post(url, json=body) as response:
                    data = await response.json()
                    return str(data["choices"][0]["message"]["content"])
            except (aiohttp.ClientError, ValueError, LookupError, TypeError):
                return None

        async def gated(i: int) -> str | None:
            async with gate:
                return await one(i)

        if not pool:
            return await asyncio.gather(*(gated(i) for i in range(n)))
        texts: list[str | None] = [None] * n
        ids = iter(range(n))

        async def worker() -> None:
            for i in ids:
                texts[i] = await one(i)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return texts


def _text(result: Any) -> str | None:
    return result if isinstance(result, str) or result is None else getattr(result, "text", None)


def main(argv: list[str]) -> None:
    """Run the batch; print ``{"received", "texts", "vmhwm_kib"}`` as one JSON line."""
    client, base_url, n, concurrency, rpm = argv[0], argv[1], *map(int, argv[2:5])
    if client == "minimallm":
        results = asyncio.run(_minimallm(base_url, n, concurrency, rpm))
    elif client in ("aiohttp", "aiohttp-pool"):
        results = asyncio.run(_aiohttp(base_url, n, concurrency, client == "aiohttp-pool"))
    else:
        raise SystemExit(f"unknown client {client!r}: minimallm, aiohttp or aiohttp-pool")
    texts = sum(isinstance(t, str) and t.startswith("echo") for t in map(_text, results))
    line = {"received": len(results), "texts": texts, "vmhwm_kib": _vmhwm_kib()}
    print(json.dumps(line), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
