"""Fake servers that push back, for flow-control tests in virtual time.

Each is a :class:`fakes.FakeServer` whose ``handle`` decides like a real pushing-back
endpoint would (the project's mock server does the same over real sockets, for the
benchmarks): a token bucket with OpenAI's rate headers, a fixed number of slots, random
faults, a window of 429s (a storm), a window where nobody answers (an outage).
"""

from __future__ import annotations

import io
import json
import math
import random
from typing import Any

import trio
import trio.testing

from fakes import FakeServer
from minimallm import (
    BatchAbortedError,
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmRequest,
    OpenAIMinimaLlm,
)
from minimallm._http import errors as http_errors
from minimallm._http.reply import HttpReply
from minimallm._runtime.serve import RuntimeOptions

__all__ = [
    "CapacityServer",
    "DeadUpstreamServer",
    "FaultServer",
    "OutageServer",
    "QueueServer",
    "RefusingServer",
    "StormServer",
    "TokenBucketServer",
]

REFUSAL_S = 0.001
"""How long a refusal takes to come back (a round trip on a LAN, roughly)."""


def _ok(content: str) -> bytes:
    answer = {"choices": [{"message": {"role": "assistant", "content": f"echo: {content}"}}]}
    return json.dumps(answer).encode()


def _content(body: bytes) -> str:
    return str(json.loads(body)["messages"][-1]["content"])


class _Recording(FakeServer):
    """Keeps (arrival time, outcome) of every request."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[float, str]] = []

    def outcomes(self, kind: str) -> int:
        return sum(1 for _, k in self.log if k == kind)


class TokenBucketServer(_Recording):
    """``rate`` tokens a second, ``burst`` at most; no token: 429. ``manners``: what the
    answers say, like the mock's options: ``"headers"`` (Retry-After in whole seconds
    up, retry-after-ms, and x-ratelimit-* on every answer), ``"retry-after"`` (only a
    whole-second Retry-After on a 429), ``"bare"`` (nothing at all)."""

    def __init__(
        self, rate: float, burst: int, latency: float = 0.0, manners: str = "headers"
    ) -> None:
        super().__init__()
        if manners not in ("headers", "retry-after", "bare"):
            raise ValueError(f"manners must be headers, retry-after or bare, got {manners!r}")
        self.rate, self.burst, self.latency, self.manners = rate, burst, latency, manners
        self._tokens = float(burst)
        self._at = 0.0

    def _headers(self, now: float) -> dict[str, str]:
        if self.manners != "headers":
            return {}
        remaining = int(self._tokens)
        reset_ms = (self.burst - self._tokens) / self.rate * 1000
        return {
            "x-ratelimit-limit-requests": str(self.burst),
            "x-ratelimit-remaining-requests": str(remaining),
            "x-ratelimit-reset-requests": f"{max(0, round(reset_ms))}ms",
        }

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1.0:
            wait = (1.0 - self._tokens) / self.rate
            self.log.append((now, "429"))
            headers = self._headers(now)
            if self.manners != "bare":
                headers["retry-after"] = str(max(1, math.ceil(wait)))
            if self.manners == "headers":
                headers["retry-after-ms"] = f"{wait * 1000:.0f}"
            await trio.sleep(REFUSAL_S)
            return HttpReply(429, headers, b'{"error": {"message": "rate limit"}}')
        self._tokens -= 1.0
        self.log.append((now, "ok"))
        headers = self._headers(now)
        await trio.sleep(self.latency)
        return HttpReply(200, headers, _ok(_content(body)))


class CapacityServer(_Recording):
    """``slots`` requests at once; above them 429 with Retry-After: 1 at once (or
    ``status`` with ``headers``); lognormal latency with the given median."""

    def __init__(
        self,
        slots: int,
        median: float,
        sigma: float,
        seed: int = 1,
        *,
        status: int = 429,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.slots, self.median, self.sigma = slots, median, sigma
        self.status = status
        self.headers = {"retry-after": "1"} if headers is None else headers
        self.rng = random.Random(seed)
        self.busy = 0
        self.service_s = 0.0

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        if self.busy >= self.slots:
            self.log.append((now, "429"))
            await trio.sleep(REFUSAL_S)
            return HttpReply(self.status, dict(self.headers), b'{"error": {"message": "busy"}}')
        self.busy += 1
        self.log.append((now, "ok"))
        latency = self.median * math.exp(self.rng.gauss(0.0, self.sigma))
        self.service_s += latency
        try:
            await trio.sleep(latency)
        finally:
            self.busy -= 1
        return HttpReply(200, {}, _ok(_content(body)))


class QueueServer(_Recording):
    """A queueing server (llama.cpp): ``slots`` requests served at once, ``latency``
    each; the others wait their turn (FIFO), never refused. A request whose client
    left while it waited is dropped from the queue."""

    def __init__(self, slots: int, latency: float) -> None:
        super().__init__()
        self.latency = latency
        self._slots = trio.Semaphore(slots)  # trio's waiters are served FIFO

    async def handle(self, body: bytes) -> HttpReply:
        async with self._slots:
            self.log.append((trio.current_time(), "ok"))
            await trio.sleep(self.latency)
        return HttpReply(200, {}, _ok(_content(body)))


class FaultServer(_Recording):
    """Random faults per attempt: 3 % 500, 2 % 503, 1 % reset, 1 % hang, 1 % malformed."""

    def __init__(self, latency: float, seed: int = 2) -> None:
        super().__init__()
        self.latency = latency
        self.rng = random.Random(seed)

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        x = self.rng.random()
        kind = (
            "500" if x < 0.03 else "503" if x < 0.05 else "reset" if x < 0.06
            else "hang" if x < 0.07 else "malformed" if x < 0.08 else "ok"
        )  # fmt: skip
        self.log.append((now, kind))
        if kind == "hang":
            await trio.sleep_forever()
        await trio.sleep(self.latency)
        if kind == "reset":
            raise http_errors.ReadError("connection reset by peer")
        if kind in ("500", "503"):
            return HttpReply(int(kind), {}, b'{"error": {"message": "fault"}}')
        if kind == "malformed":
            return HttpReply(200, {}, b"<html>not json")
        return HttpReply(200, {}, _ok(_content(body)))


class StormServer(_Recording):
    """Healthy (``latency``) except between ``start`` and ``end``: every request 429 with
    Retry-After: 1."""

    def __init__(self, latency: float, start: float, end: float) -> None:
        super().__init__()
        self.latency, self.start, self.end = latency, start, end

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        if self.start <= now < self.end:
            self.log.append((now, "429"))
            await trio.sleep(REFUSAL_S)
            return HttpReply(429, {"retry-after": "1"}, b'{"error": {"message": "storm"}}')
        self.log.append((now, "ok"))
        await trio.sleep(self.latency)
        return HttpReply(200, {}, _ok(_content(body)))


class OutageServer(_Recording):
    """Healthy (``latency``) except between ``start`` and ``end``: every connection is
    refused."""

    def __init__(self, latency: float, start: float, end: float) -> None:
        super().__init__()
        self.latency, self.start, self.end = latency, start, end

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        if self.start <= now < self.end:
            self.log.append((now, "refused"))
            await trio.sleep(REFUSAL_S)
            raise http_errors.ConnectError("connection refused to fake.invalid:80")
        self.log.append((now, "ok"))
        await trio.sleep(self.latency)
        if self.start <= trio.current_time() < self.end:  # the server went away meanwhile
            raise http_errors.ReadError("connection reset by peer")
        return HttpReply(200, {}, _ok(_content(body)))


class RefusingServer(_Recording):
    """Refuses a share of requests whatever the load: at random (``share``), or every
    other one (``alternate``); 429 with ``headers`` (none by default)."""

    def __init__(
        self,
        latency: float,
        share: float = 0.5,
        *,
        alternate: bool = False,
        headers: dict[str, str] | None = None,
        seed: int = 3,
    ) -> None:
        super().__init__()
        self.latency, self.share, self.alternate = latency, share, alternate
        self.headers = headers or {}
        self.rng = random.Random(seed)
        self.n = 0

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        self.n += 1
        refuse = self.n % 2 == 0 if self.alternate else self.rng.random() < self.share
        if refuse:
            self.log.append((now, "429"))
            await trio.sleep(REFUSAL_S)
            return HttpReply(429, dict(self.headers), b'{"error": {"message": "try again"}}')
        self.log.append((now, "ok"))
        await trio.sleep(self.latency)
        return HttpReply(200, {}, _ok(_content(body)))


class DeadUpstreamServer(_Recording):
    """A gateway (it accepts every connection) whose upstream is down between ``start``
    and ``end``: every request then gets ``status`` (502 by default) at once."""

    def __init__(self, latency: float, start: float, end: float, status: int = 502) -> None:
        super().__init__()
        self.latency, self.start, self.end, self.status = latency, start, end, status

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        if self.start <= now < self.end:
            self.log.append((now, str(self.status)))
            await trio.sleep(REFUSAL_S)
            return HttpReply(self.status, {}, b"<html>502 Bad Gateway</html>")
        self.log.append((now, "ok"))
        await trio.sleep(self.latency)
        return HttpReply(200, {}, _ok(_content(body)))


def run_virtual_batch(
    server: FakeServer, n: int, *, progress: io.StringIO | None = None, **cfg: Any
) -> tuple[list[Any] | BatchAbortedError, float]:
    """Run ``n`` requests through a backend on ``server``'s transports in virtual time
    (MockClock, autojump): the results (or the BatchAbortedError that stopped the
    batch) and the batch's virtual wall time, seconds."""
    settings: dict[str, Any] = {
        "base_url": "http://fake.invalid",
        "model": "m",
        "rpm": 0,
        "batch": BatchConfig(heartbeat_s=0, max_failures=None),
    }
    settings.update(cfg)
    out: dict[str, Any] = {}

    async def main() -> None:
        backend = OpenAIMinimaLlm(
            MinimaLlmConfig(**settings),
            options=RuntimeOptions(server.transport, random.Random(0)),
        )
        reqs = [MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"q{i}"}]) for i in range(n)]
        async with backend:
            start = trio.current_time()
            try:
                out["results"] = await backend.run_batched(
                    reqs, progress=progress if progress is not None else io.StringIO()
                )
            except BatchAbortedError as exc:
                out["results"] = exc
            out["wall"] = trio.current_time() - start

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out["results"], out["wall"]
