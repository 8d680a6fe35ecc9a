"""Replicas of one model for virtual-time tests: :class:`Replica`, a fake server with
a few slots (429 above), lognormal latency and an optional outage, and :func:`run`, a
batch through ``OPENAI_BASE_URL=a,b,c`` pointed at several of them."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import trio
import trio.testing

from fakes import FakeServer, FakeTransport
from minimallm import BatchConfig, MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm
from minimallm._http import errors as http_errors
from minimallm._http.reply import HttpReply
from minimallm._runtime.serve import RuntimeOptions
from pushback import REFUSAL_S, _content, _ok


class Replica(FakeServer):
    """``slots`` requests at once (429 with Retry-After: 1 above), lognormal latency of
    median ``median``; connections refused between ``down`` = (start, end), or with
    ``blackhole`` never answered (an attempt arriving then waits until the client gives
    up). ``log``: each attempt's arrival and outcome; ``peak``: the most attempts at once."""

    def __init__(
        self,
        slots: int,
        median: float = 0.1,
        sigma: float = 0.5,
        seed: int = 1,
        down: Any = None,
        blackhole: bool = False,
    ) -> None:
        super().__init__()
        self.blackhole = blackhole
        self.slots, self.median, self.sigma = slots, median, sigma
        self.rng = random.Random(seed)
        self.down = down
        self.busy = 0
        self.open = 0
        self.peak = 0
        self.log: list[tuple[float, str]] = []

    def count(self, kind: str, start: float = -math.inf, end: float = math.inf) -> int:
        return sum(1 for t, k in self.log if k == kind and start <= t < end)

    async def handle(self, body: bytes) -> HttpReply:
        self.open += 1
        self.peak = max(self.peak, self.open)
        try:
            return await self._answer(body)
        finally:
            self.open -= 1

    async def _answer(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        if self.down is not None and self.down[0] <= now < self.down[1]:
            if self.blackhole:
                self.log.append((now, "blackholed"))
                await trio.sleep_forever()
            self.log.append((now, "refused"))
            await trio.sleep(REFUSAL_S)
            raise http_errors.ConnectError("connection refused")
        if self.busy >= self.slots:
            self.log.append((now, "429"))
            await trio.sleep(REFUSAL_S)
            return HttpReply(429, {"retry-after": "1"}, b'{"error": {"message": "busy"}}')
        self.busy += 1
        self.log.append((now, "ok"))
        try:
            await trio.sleep(self.median * math.exp(self.rng.gauss(0.0, self.sigma)))
        finally:
            self.busy -= 1
        return HttpReply(200, {}, _ok(_content(body)))


def run(
    replicas: list[Replica],
    n: int,
    progress: io.StringIO | None = None,
    max_tokens: int | None = None,
    **cfg: Any,
) -> tuple[list[Any], float, list[Any]]:
    """Send ``n`` requests (each with ``max_tokens``) to ``replicas`` as one batch; the
    results, the wall time and the runtime's statistics once a second (``progress``:
    where the batch's progress goes; ``cfg``: settings)."""
    urls = [f"http://replica{i}.invalid/v1" for i in range(1, len(replicas) + 1)]
    by_url = {u + "/chat/completions": r for u, r in zip(urls, replicas, strict=True)}

    def factory(url: str) -> FakeTransport:
        return by_url[url].transport(url)

    settings: dict[str, Any] = {
        "base_url": ",".join(urls),
        "model": "m",
        "rpm": 0,
        "max_outstanding": 64,
        "max_attempts": 10,
        "batch": BatchConfig(num_workers=256, heartbeat_s=0, max_failures=None),
    }
    settings.update(cfg)
    out: dict[str, Any] = {"stats": []}

    async def watch(backend: OpenAIMinimaLlm) -> None:
        while True:
            await trio.sleep(1.0)
            runtime = await backend._runtime_here()
            out["stats"].append((trio.current_time(), runtime.statistics()))

    async def main() -> None:
        backend = OpenAIMinimaLlm(
            MinimaLlmConfig(**settings), options=RuntimeOptions(factory, random.Random(0))
        )
        reqs = [
            MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"q{i}"}], max_tokens=max_tokens)
            for i in range(n)
        ]
        async with backend, trio.open_nursery() as nursery:
            nursery.start_soon(watch, backend)
            start = trio.current_time()
            out["results"] = await backend.run_batched(reqs, progress=progress or io.StringIO())
            out["wall"] = trio.current_time() - start
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out["results"], out["wall"], out["stats"]
