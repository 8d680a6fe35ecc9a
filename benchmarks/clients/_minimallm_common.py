"""What the two minimallm rows share: the config and the request ids → requests."""

from __future__ import annotations

from clients import PROMPT_MODEL
from minimallm._config import BatchConfig, MinimaLlmConfig
from minimallm._types import MinimaLlmRequest


def bench_config(base_url: str, concurrency: int, cache_dir: str | None = None) -> MinimaLlmConfig:
    """MAX_OUTSTANDING = num_workers = concurrency, no pacing, no heartbeat, no abort,
    and no cache unless ``cache_dir`` is given: only the request path is measured."""
    return MinimaLlmConfig(
        base_url=base_url,
        model=PROMPT_MODEL,
        cache_dir=cache_dir,
        max_outstanding=concurrency,
        rpm=0,
        timeout_s=60.0,
        batch=BatchConfig(num_workers=concurrency, heartbeat_s=0.0, max_failures=None),
    )


def make_request(i: int) -> MinimaLlmRequest:
    """The request for id ``i`` (same payload as ``clients.chat_payload(i)``)."""
    return MinimaLlmRequest(f"q{i}", ({"role": "user", "content": f"question {i}"},))
