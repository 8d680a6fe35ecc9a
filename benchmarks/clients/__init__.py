"""The clients a benchmark compares, each in its own module.

A client module defines:

- ``LOOP``: ``"trio"`` or ``"asyncio"`` — which event loop the child process runs;
- ``open_client(base_url, concurrency, **options)``: an async context manager yielding
  an object with ``async def run(ids: range)`` that sends one chat request per id
  (prompt ``f"question {id}"``) with at most ``concurrency`` in flight and returns
  ``(succeeded, failed)`` or ``(succeeded, failed, {extra counts})``. ``options`` (e.g.
  ``cache_dir``) come from the benchmark script; most clients take none. The object
  may also have ``prepare(ids)``, called untimed just before ``run(ids)``.

The child process (``_child.py``) opens the client, runs a warm-up (connections
opened, runtime started), then times ``run`` on the measured ids.

To add a row, write a module here and add an entry to CLIENTS.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["CLIENTS", "DEFAULT_CLIENTS", "PROMPT_MODEL", "ClientInfo", "chat_payload"]

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
    README."""

    module: str
    kind: Literal["minimallm", "baseline", "diagnostic"]
    default: bool
    what: str

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
    ),
    "minimallm-asyncio": ClientInfo(
        "minimallm_asyncio",
        "minimallm",
        True,
        "OpenAIMinimaLlm.generate under asyncio (through the bridge thread)",
    ),
    "minimallm-batched": ClientInfo(
        "minimallm_batched",
        "minimallm",
        True,
        "OpenAIMinimaLlm.run_batched under trio (num_workers = concurrency)",
    ),
    "minimallm-batched-cache": ClientInfo(
        "minimallm_batched_cache",
        "minimallm",
        False,  # bench_cache.py's row: the same batch writing every answer to the cache
        "run_batched under trio with cache_dir (a fresh directory unless given one)",
    ),
    "aiohttp-asyncio": ClientInfo(
        "aiohttp_asyncio",
        "baseline",
        True,
        "aiohttp.ClientSession, asyncio.Semaphore, connector limit = concurrency",
    ),
    "httpx-trio": ClientInfo(
        "httpx_trio",
        "baseline",
        False,  # ~70 req/s at 64 concurrent (httpcore's pool): minutes per default run
        "httpx.AsyncClient under trio, trio.Semaphore, pool limits = concurrency",
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
