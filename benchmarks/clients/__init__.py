"""The clients a benchmark compares, each in its own module.

A client module defines:

- ``LOOP``: ``"trio"`` or ``"asyncio"`` — which event loop the child process runs;
- ``open_client(base_url, concurrency, **options)``: an async context manager yielding
  an object with ``async def run(ids: range)`` that sends one chat request per id
  (prompt ``f"question {id}"``) with at most ``concurrency`` in flight and returns
  ``(succeeded, failed)`` or ``(succeeded, failed, {extra counts})`` (e.g.
  ``attempts``, ``cached``). ``options`` come from the scenario: ``rpm``,
  ``max_attempts``, ``timeout_s`` (the clients with ``settings=True`` below take them),
  ``cache_dir`` (minimallm-batched); the diagnostic rows take none. The object may also
  have ``prepare(ids)``, called untimed just before ``run(ids)``, and ``progress()``,
  the counts so far, read when a run is cut short by its deadline.

The child process (``_child.py``) opens the client, runs a warm-up (connections
opened, runtime started), then times ``run`` on the measured ids.

To add a row, write a module here and add an entry to CLIENTS.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

__all__ = [
    "CLIENTS",
    "DEFAULT_CLIENTS",
    "PROMPT_MODEL",
    "ClientInfo",
    "chat_payload",
    "missing",
]

PROMPT_MODEL = "mock-model"
"""The model name every client sends (the mock server's default)."""


def chat_payload(i: int) -> dict[str, object]:
    """The JSON body every baseline sends for id ``i`` (minimallm builds the same one)."""
    return {"model": PROMPT_MODEL, "messages": [{"role": "user", "content": f"question {i}"}]}


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """A registered client: its module (under ``clients``); ``kind``: ``"minimallm"``,
    ``"baseline"`` (a plain client users would write; the headline ratios divide by
    these) or ``"diagnostic"`` (a lower bound that explains where time goes);
    ``default``: run unless ``--clients`` says otherwise; ``what``: one line for the
    README; ``settings``: takes the scenario's ``rpm``, ``max_attempts`` and
    ``timeout_s``; ``requires``: the modules it imports beyond minimallm's own
    dependencies (installed by the ``bench`` extra)."""

    module: str
    kind: Literal["minimallm", "baseline", "diagnostic"]
    default: bool
    what: str
    settings: bool = False
    requires: tuple[str, ...] = ()

    @property
    def reference(self) -> bool:
        """True for rows other rows are divided by (baselines and diagnostics)."""
        return self.kind != "minimallm"


CLIENTS: dict[str, ClientInfo] = {
    "minimallm-trio": ClientInfo(
        "minimallm_trio",
        "minimallm",
        True,
        "OpenAIMinimaLlm.generate under trio (native, no bridge)",
        settings=True,
    ),
    "minimallm-asyncio": ClientInfo(
        "minimallm_asyncio",
        "minimallm",
        True,
        "OpenAIMinimaLlm.generate under asyncio (through the bridge thread)",
        settings=True,
    ),
    "minimallm-batched": ClientInfo(
        "minimallm_batched",
        "minimallm",
        True,
        "OpenAIMinimaLlm.run_batched under trio (num_workers = 2 x concurrency)",
        settings=True,
    ),
    "minimallm-batched-cache": ClientInfo(
        "minimallm_batched_cache",
        "minimallm",
        False,  # bench_cache.py's row: the same batch writing every answer to the cache
        "run_batched under trio with cache_dir (a fresh directory unless given one)",
    ),
    "minimallm-streamed": ClientInfo(
        "minimallm_streamed",
        "minimallm",
        False,  # the memory family's 1,000,000 row, once minimallm can stream results
        "minimallm's streaming results API under trio (HOOK: skipped until it exists)",
        settings=True,
    ),
    "aiohttp-asyncio": ClientInfo(
        "aiohttp_asyncio",
        "baseline",
        True,
        "aiohttp.ClientSession, asyncio.Semaphore, connector limit = concurrency, no retry",
        requires=("aiohttp",),
    ),
    "aiohttp-retry": ClientInfo(
        "aiohttp_retry",
        "baseline",
        True,
        "aiohttp loop with a competent retry: backoff + jitter, Retry-After, per-attempt timeout",
        settings=True,
        requires=("aiohttp",),
    ),
    "openai-asyncio": ClientInfo(
        "openai_asyncio",
        "baseline",
        True,
        "openai-python AsyncOpenAI + asyncio.Semaphore, its own retries (max_retries)",
        settings=True,
        requires=("openai",),
    ),
    "httpx-trio": ClientInfo(
        "httpx_trio",
        "baseline",
        False,  # ~70 req/s at 64 concurrent (httpcore's pool): minutes per default run
        "httpx.AsyncClient under trio, trio.Semaphore, pool limits = concurrency",
        requires=("httpx",),
    ),
    "httpcore-trio": ClientInfo(
        "httpcore_trio",
        "diagnostic",
        False,
        "diagnostic: minimallm's transport alone (one httpcore connection per task)",
    ),
    "raw-trio": ClientInfo(
        "raw_trio",
        "diagnostic",
        False,
        "diagnostic floor: trio sockets + minimal HTTP/1.1, one write per request",
    ),
}
"""Every row a benchmark can show, in display order."""

DEFAULT_CLIENTS: list[str] = [name for name, info in CLIENTS.items() if info.default]
"""The rows of a default run (kept under about three minutes)."""


def missing(client: str) -> list[str]:
    """The modules ``client`` needs that are not installed (``pip install -e '.[bench]'``)."""
    return [m for m in CLIENTS[client].requires if importlib.util.find_spec(m) is None]
