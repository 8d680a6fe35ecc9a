"""TPM against a server that limits tokens per minute (virtual time): goodput, few
429s, a request larger than the whole budget completes, headers lower the budget."""

from __future__ import annotations

import io
import json
import math
import random
import warnings
from collections import deque
from typing import Any

import trio
import trio.testing

from fakes import FakeServer
from minimallm import (
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._http.reply import HttpReply
from minimallm._runtime.serve import RuntimeOptions

COMPLETION = 100


class TokenWindowServer(FakeServer):
    """At most ``tpm`` tokens (prompt = characters / 4, plus 100 of completion) in any
    60 s; above: 429 with Retry-After; a request larger than ``tpm`` only when the
    window is empty. x-ratelimit-*-tokens headers on every answer."""

    def __init__(self, tpm: int, latency: float = 0.5) -> None:
        super().__init__()
        self.tpm, self.latency = tpm, latency
        self.window: deque[tuple[float, int]] = deque()
        self.log: list[tuple[float, str, int]] = []

    def _sum(self, now: float) -> int:
        while self.window and self.window[0][0] <= now - 60.0:
            self.window.popleft()
        return sum(t for _, t in self.window)

    def headers(self, now: float) -> dict[str, str]:
        used = self._sum(now)
        reset = (self.window[0][0] + 60.0 - now) if self.window else 0.0
        return {
            "x-ratelimit-limit-tokens": str(self.tpm),
            "x-ratelimit-remaining-tokens": str(max(0, self.tpm - used)),
            "x-ratelimit-reset-tokens": f"{reset:.3f}s",
        }

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        content = json.loads(body)["messages"][-1]["content"]
        prompt = math.ceil(len(content) / 4)
        tokens = prompt + COMPLETION
        used = self._sum(now)
        if used + tokens > self.tpm and used > 0:
            self.log.append((now, "429", tokens))
            headers = self.headers(now)
            headers["retry-after"] = "1"
            return HttpReply(429, headers, b'{"error": {"message": "tokens per minute"}}')
        self.window.append((now, tokens))
        self.log.append((now, "ok", tokens))
        await trio.sleep(self.latency)
        answer = {
            "choices": [{"message": {"role": "assistant", "content": "ok"}}],
            "usage": {
                "prompt_tokens": prompt,
                "completion_tokens": COMPLETION,
                "total_tokens": tokens,
            },
        }
        return HttpReply(200, self.headers(trio.current_time()), json.dumps(answer).encode())


def run(server: TokenWindowServer, contents: list[str], **cfg: Any) -> tuple[list[Any], float]:
    settings: dict[str, Any] = {
        "base_url": "http://tpm.invalid/v1",
        "model": "m",
        "rpm": 0,
        "max_attempts": 0,
        "batch": BatchConfig(num_workers=64, heartbeat_s=0, max_failures=None),
    }
    settings.update(cfg)
    out: dict[str, Any] = {}

    async def main() -> None:
        backend = OpenAIMinimaLlm(
            MinimaLlmConfig(**settings), options=RuntimeOptions(server.transport, random.Random(0))
        )
        reqs = [
            MinimaLlmRequest(f"r{i}", [{"role": "user", "content": c}])
            for i, c in enumerate(contents)
        ]
        async with backend:
            out["results"] = await backend.run_batched(reqs, progress=io.StringIO())
            out["wall"] = trio.current_time()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out["results"], out["wall"]


def mixed_prompts(n: int, seed: int = 3) -> list[str]:
    rng = random.Random(seed)
    return [f"{i} " + "x" * (4 * rng.randint(50, 4000)) for i in range(n)]


def goodput(server: TokenWindowServer) -> float:
    """Tokens answered / the most a 60 s window allows over the sends' span."""
    oks = [(t, n) for t, kind, n in server.log if kind == "ok"]
    last = max(t for t, _ in oks)
    return sum(n for _, n in oks) / (server.tpm * (math.floor(last / 60.0) + 1))


def test_tpm_keeps_goodput_high_and_429s_rare() -> None:
    server = TokenWindowServer(tpm=100_000)
    contents = mixed_prompts(400)
    results, _wall = run(server, contents, tpm=100_000)
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert goodput(server) >= 0.9, goodput(server)
    assert sum(1 for _, kind, _ in server.log if kind == "429") <= 0.05 * len(contents)


def test_without_tpm_the_same_server_refuses_many() -> None:
    """The control: the test above can fail (TPM off: no budget, nothing learned)."""
    server = TokenWindowServer(tpm=100_000)
    _results, _wall = run(server, mixed_prompts(200), max_attempts=3)
    refused = sum(1 for _, kind, _ in server.log if kind == "429")
    assert refused > 0.05 * 200


def test_the_budget_is_learned_from_the_token_headers() -> None:
    server = TokenWindowServer(tpm=100_000)
    contents = mixed_prompts(400)
    results, _wall = run(server, contents, tpm=1_000_000)  # ten times too much
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert goodput(server) >= 0.9, goodput(server)
    assert sum(1 for _, kind, _ in server.log if kind == "429") <= 0.05 * len(contents)


def test_a_request_larger_than_the_budget_goes_alone_and_completes() -> None:
    server = TokenWindowServer(tpm=20_000)
    contents = mixed_prompts(30)
    contents.insert(10, "big " + "x" * (4 * 30_000))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results, _wall = run(server, contents, tpm=20_000)
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    assert any("larger than the token budget" in str(w.message) for w in caught)
    big = next(t for t, kind, n in server.log if kind == "ok" and n > 20_000)
    near = [t for t, kind, _ in server.log if kind == "ok" and abs(t - big) < 60.0 and t != big]
    assert near == []  # alone in its minute
