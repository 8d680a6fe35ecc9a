"""Several endpoints of one model (``OPENAI_BASE_URL=a,b,c``), in virtual time: each
endpoint its own flow control, work shared by free learned capacity, an endpoint's
outage costs no request."""

from __future__ import annotations

import io
import math
import random
from typing import Any

import trio
import trio.testing

from fakes import FakeServer, FakeTransport
from minimallm import (
    BatchConfig,
    MinimaLlmConfig,
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    OpenAIMinimaLlm,
)
from minimallm._http import errors as http_errors
from minimallm._http.reply import HttpReply
from minimallm._runtime.endpoint import rpm_share
from minimallm._runtime.serve import RuntimeOptions
from pushback import REFUSAL_S, _content, _ok


class Replica(FakeServer):
    """``slots`` requests at once (429 with Retry-After: 1 above), lognormal latency of
    median ``median``; connections refused between ``down`` = (start, end)."""

    def __init__(
        self, slots: int, median: float = 0.1, sigma: float = 0.5, seed: int = 1, down: Any = None
    ) -> None:
        super().__init__()
        self.slots, self.median, self.sigma = slots, median, sigma
        self.rng = random.Random(seed)
        self.down = down
        self.busy = 0
        self.log: list[tuple[float, str]] = []

    def count(self, kind: str, start: float = -math.inf, end: float = math.inf) -> int:
        return sum(1 for t, k in self.log if k == kind and start <= t < end)

    async def handle(self, body: bytes) -> HttpReply:
        now = trio.current_time()
        if self.down is not None and self.down[0] <= now < self.down[1]:
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


def run(replicas: list[Replica], n: int, **cfg: Any) -> tuple[list[Any], float, list[Any]]:
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
        reqs = [MinimaLlmRequest(f"r{i}", [{"role": "user", "content": f"q{i}"}]) for i in range(n)]
        async with backend, trio.open_nursery() as nursery:
            nursery.start_soon(watch, backend)
            start = trio.current_time()
            out["results"] = await backend.run_batched(reqs, progress=io.StringIO())
            out["wall"] = trio.current_time() - start
            nursery.cancel_scope.cancel()

    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    return out["results"], out["wall"], out["stats"]


def test_unequal_replicas_share_the_work_by_capacity() -> None:
    replicas = [Replica(8, seed=1), Replica(16, seed=2), Replica(32, seed=3)]
    results, wall, _ = run(replicas, 6000)
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    oks = [r.count("ok") for r in replicas]
    total = sum(oks)
    for r, ok in zip(replicas, oks, strict=True):
        share, fair = ok / total, r.slots / 56
        assert abs(share - fair) <= 0.15 * fair, (oks, share, fair)
    # 56 slots of ~0.113 s mean service (lognormal, median 0.1, sigma 0.5)
    ideal = 6000 * 0.1 * math.exp(0.5**2 / 2) / 56
    assert ideal / wall >= 0.9, (ideal, wall)
    # each replica's slots are found by refusals (429 above them): a refused request
    # waits one base backoff, not a doubling one (flow control decides how fast all
    # send), so a few hundred refusals, not the thousands of a client that never learns
    # (220 of 6,000 in virtual time, 3.7 %; 253 before the token-bucket work)
    assert sum(r.count("429") for r in replicas) <= 0.05 * 6000


def test_a_replica_down_for_20_s_costs_no_request_and_rejoins() -> None:
    replicas = [Replica(8, seed=1), Replica(16, seed=2, down=(5.0, 25.0)), Replica(32, seed=3)]
    results, _wall, stats = run(replicas, 12000, max_attempts=6)  # the default attempts
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    down = replicas[1]
    # Noticing takes until the attempts sent before the fall have ended (an answer
    # breaks the run of refusals): ~0.1 s, its Workers refusing fast meanwhile (each
    # such request loses one attempt and goes elsewhere after its backoff). Then it gets
    # probes only, one every <= 2 s.
    assert down.count("refused") < 300
    assert down.count("refused", 5.5) <= 12, down.count("refused", 5.5)
    # the others carried the work meanwhile, and it rejoins within ~2 s of its return
    assert replicas[2].count("ok", 10.0, 20.0) >= 0.8 * 32 / 0.113 * 10
    assert down.count("ok", 27.5, 30.0) >= 0.8 * 16 / 0.113 * 2.5
    # the statistics name its state while it is down, and only then
    states = {t: [e.state for e in s.endpoints] for t, s in stats}
    assert all(states[t] == ["open", "outage, probing", "open"] for t in states if 8 < t < 24)
    assert all(states[t] == ["open", "open", "open"] for t in states if t > 28)
    texts = [s.binding.text for t, s in stats if 8 < t < 24 and s.binding is not None]
    assert texts and all(text.startswith("replica 2: outage") for text in texts)


def test_a_replica_down_from_the_start_costs_no_request() -> None:
    replicas = [Replica(8, seed=1), Replica(16, seed=2, down=(0.0, math.inf))]
    results, _wall, stats = run(replicas, 2000, max_attempts=6)
    assert [r for r in results if isinstance(r, MinimaLlmFailure)] == []
    assert replicas[1].count("refused", 1.0) <= 0.6 * _wall  # probes only
    assert all(s.endpoints[1].state == "outage, probing" for _, s in stats)


def test_the_cache_key_does_not_depend_on_the_endpoint(tmp_path: Any) -> None:
    async def ask(base_url: str) -> list[Any]:
        server = FakeServer()
        cfg = MinimaLlmConfig(base_url=base_url, model="m", rpm=0, cache_dir=str(tmp_path))
        backend = OpenAIMinimaLlm(cfg, options=RuntimeOptions(server.transport))
        async with backend:
            result = await backend.generate(
                MinimaLlmRequest("a", [{"role": "user", "content": "x"}])
            )
        return [result, len(server.sent)]

    first = trio.run(ask, "http://a.invalid/v1,http://b.invalid/v1")
    again = trio.run(ask, "http://c.invalid/v1")
    assert first[1] == 1 and not first[0].cached
    assert again[1] == 0 and again[0].cached  # the same key, from another endpoint


def test_with_one_endpoint_the_statistics_look_as_before() -> None:
    results, _wall, stats = run([Replica(8)], 100)
    assert all(isinstance(r, MinimaLlmResponse) for r in results)
    if stats:
        s = stats[-1][1]
        assert len(s.endpoints) == 1 and s.limiter == s.endpoints[0].limiter


def test_rpm_is_split_evenly_and_never_exceeds_the_total() -> None:
    assert [rpm_share(600, 3, k) for k in (1, 2, 3)] == [200, 200, 200]
    assert [rpm_share(601, 3, k) for k in (1, 2, 3)] == [201, 200, 200]
    assert [rpm_share(0, 3, k) for k in (1, 2, 3)] == [0, 0, 0]
    assert sum(rpm_share(1000, 7, k) for k in range(1, 8)) == 1000
