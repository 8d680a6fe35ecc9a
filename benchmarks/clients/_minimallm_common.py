"""What the minimallm rows share: the config from a scenario's settings, and the
request for an id. Public API only, so the rows keep working while the internals change."""

from __future__ import annotations

from benchmarks.clients import PROMPT_MODEL
from minimallm import BatchConfig, MinimaLlmConfig, MinimaLlmRequest


def bench_config(
    base_url: str,
    concurrency: int,
    cache_dir: str | None = None,
    *,
    rpm: int = 0,
    max_attempts: int = 6,
    timeout_s: float = 60.0,
) -> MinimaLlmConfig:
    """MAX_OUTSTANDING = ``concurrency`` and NUM_WORKERS twice that (the defaults' ratio,
    32 and 64: an item waiting out a backoff holds no connection, so the HTTP cap stays
    the binding limit, as it is for the peers' semaphore), RPM = ``rpm`` (0: no pacing),
    ``max_attempts`` (0: until success), ``timeout_s`` per attempt (seconds); every
    other setting at its default (cooldown included), heartbeat off, never aborting,
    no cache unless ``cache_dir`` is given."""
    return MinimaLlmConfig(
        base_url=base_url,
        model=PROMPT_MODEL,
        cache_dir=cache_dir,
        max_outstanding=concurrency,
        rpm=rpm,
        max_attempts=max_attempts,
        timeout_s=timeout_s,
        batch=BatchConfig(num_workers=2 * concurrency, heartbeat_s=0.0, max_failures=None),
    )


def make_request(i: int) -> MinimaLlmRequest:
    """The request for id ``i`` (same payload as ``clients.chat_payload(i)``)."""
    return MinimaLlmRequest(f"q{i}", ({"role": "user", "content": f"question {i}"},))
