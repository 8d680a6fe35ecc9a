"""What the mock server answers to one chat request (pure: clock and randomness injected).

The order of the checks is the order a real deployment applies them in:

1. the timeline (``timeline.py``): inside an outage a request is dropped (``blackhole``)
   or its connection reset (``refuse``; normally the listener is closed then, so this
   only catches a request already on its way); inside a storm it is answered the
   storm's status at once (outcome ``storm``);
2. the rate limit (``ratelimit.py``): no token -> 429 at once (outcome ``ratelimit``);
3. the concurrency capacity: more than ``capacity`` in flight -> 429 or 503 at once
   (outcome ``capacity``), or, with ``capacity_mode="queue"``, the request waits for a
   slot before its latency starts (like vLLM or Ollama);
4. the prompt's ``#mock:fault`` sequence, else a random fault (``faults.py``);
5. the latency: the prompt's ``#mock:latency``, else ``latency_s`` (fixed, or the median
   of a lognormal with ``latency_sigma``) plus uniform jitter in ``[0, latency_jitter_s]``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from minimallm.mock.bodies import seconds_text
from minimallm.mock.faults import Directives, FaultRoller, FaultSequences
from minimallm.mock.ratelimit import Headers, RateLimiter, request_tokens
from minimallm.mock.timeline import Outage, Storm, Timeline

if TYPE_CHECKING:
    from minimallm.mock.config import MockServerConfig

__all__ = [
    "BLACKHOLE",
    "CAPACITY",
    "RATELIMIT",
    "REFUSED",
    "STORM",
    "WINDOW",
    "Decider",
    "Verdict",
    "draw_latency",
]

CAPACITY = "capacity"
"""Outcome of a request refused by the concurrency capacity (429 or 503)."""
RATELIMIT = "ratelimit"
"""Outcome of a request refused with 429 by the rate limit."""
STORM = "storm"
"""Outcome of a request answered during a storm phase."""
BLACKHOLE = "blackhole"
"""Outcome of a request swallowed by a blackhole outage (never answered)."""
REFUSED = "refused"
"""Outcome of a request refused with 429 by ``refuse_every`` (whatever the load)."""
WINDOW = "window"
"""Outcome of a request refused with 429 by the calendar-window limit."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one request.

    ``kind``: the recorded outcome (``ok``, a fault kind, a status such as ``"500"``,
    or one of CAPACITY, RATELIMIT, STORM, BLACKHOLE); ``status``: answer this status at
    once, without latency (refusals); ``latency_s``: seconds to wait before answering
    otherwise; ``headers``: extra response headers (rate-limit family, Retry-After);
    ``queue``: hold a capacity slot while answering, waiting for one first if none is
    free (``capacity_mode="queue"``), the latency counted from then; ``phase``: the
    timeline label the request arrived in.
    """

    kind: str
    status: int | None = None
    latency_s: float = 0.0
    headers: Headers = ()
    queue: bool = False
    phase: str = "normal"


def draw_latency(config: MockServerConfig, rng: random.Random) -> float:
    """The server's latency for one request (seconds): fixed ``latency_s`` or a lognormal
    whose median is ``latency_s`` (``latency_sigma`` the sigma of its logarithm), plus a
    uniform extra in ``[0, latency_jitter_s]``."""
    latency = config.latency_s
    if config.latency_dist == "lognormal" and latency > 0:
        latency = rng.lognormvariate(math.log(latency), config.latency_sigma)
    if config.latency_jitter_s > 0:
        latency += rng.uniform(0.0, config.latency_jitter_s)
    return latency


def _retry_after(seconds: float | None) -> Headers:
    return () if seconds is None else (("retry-after", seconds_text(seconds)),)


class Decider:
    """Decides every chat request's outcome; holds the state behind the decisions (rate
    buckets, fault-sequence counters, the timeline's origin). Not thread-safe: the
    server's state object calls it under its lock."""

    __slots__ = (
        "_config",
        "_limiter",
        "_origin",
        "_rng",
        "_roller",
        "_seen",
        "_sequences",
        "_window",
        "timeline",
    )

    def __init__(self, config: MockServerConfig, rng: random.Random) -> None:
        self._config = config
        self._rng = rng
        self._roller = FaultRoller(config.fault_rates)
        self._sequences = FaultSequences()
        self._limiter: RateLimiter | None = None
        self._origin: float | None = None
        self._seen = 0  # chat requests past the timeline (for refuse_every)
        self._window = (-1, 0)  # (calendar window index, requests admitted in it)
        self.timeline = Timeline(config.phases)

    @property
    def origin(self) -> float | None:
        """When the first chat request arrived (the caller's clock), or None."""
        return self._origin

    def blackholed(self, now: float) -> bool:
        """True while a blackhole outage is active at ``now`` (answers are withheld)."""
        if self._origin is None or not self.timeline:
            return False
        index = self.timeline.at(now - self._origin)
        if index is None:
            return False
        phase = self.timeline.phases[index]
        return isinstance(phase, Outage) and phase.mode == "blackhole"

    def attempts(self, content: str) -> int:
        """Attempts counted for a prompt content carrying a fault directive."""
        return self._sequences.attempts(content)

    def clear_sequences(self) -> None:
        """Restart every fault sequence."""
        self._sequences.clear()

    def decide(
        self,
        *,
        now: float,
        in_flight: int,
        body: dict[str, Any] | None,
        content: str,
        directives: Directives,
    ) -> Verdict:
        """The verdict for one chat request arriving at ``now`` (seconds) while
        ``in_flight`` requests (this one included) are in flight; the config's
        ``extra_headers`` come first on every answer."""
        verdict = self._decide(now, in_flight, body, content, directives)
        extra = self._config.extra_headers
        if not extra:
            return verdict
        return dataclasses.replace(verdict, headers=extra + verdict.headers)

    def _decide(
        self,
        now: float,
        in_flight: int,
        body: dict[str, Any] | None,
        content: str,
        directives: Directives,
    ) -> Verdict:
        cfg = self._config
        if self._origin is None:
            self._origin = now
        index = self.timeline.at(now - self._origin) if self.timeline else None
        phase = self.timeline.label(index)
        if index is not None:
            p = self.timeline.phases[index]
            if isinstance(p, Storm):
                return Verdict(STORM, p.status, headers=_retry_after(p.retry_after_s), phase=phase)
            assert isinstance(p, Outage)
            return Verdict(BLACKHOLE if p.mode == "blackhole" else "reset", phase=phase)
        headers: Headers = ()
        if cfg.refuse_every is not None:
            self._seen += 1
            if self._seen % cfg.refuse_every == 0:
                return Verdict(REFUSED, 429, phase=phase)
        if cfg.window_limit is not None:
            refusal = self._window_check(now, cfg.window_limit, cfg.window_s)
            if refusal is not None:
                return Verdict(WINDOW, 429, headers=refusal, phase=phase)
        if cfg.rate_limit_per_s is not None:
            verdict = self._rate_limiter(now).check(request_tokens(body), now)
            if not verdict.allowed:
                return Verdict(RATELIMIT, 429, headers=verdict.headers, phase=phase)
            headers = verdict.headers
        # In queue mode every answered request holds a slot (the server's semaphore).
        queue = cfg.capacity is not None and cfg.capacity_mode == "queue"
        if cfg.capacity is not None and in_flight > cfg.capacity and not queue:
            status = 503 if cfg.capacity_mode == "503" else 429
            headers += _retry_after(cfg.retry_after_s)
            return Verdict(CAPACITY, status, headers=headers, phase=phase)
        if directives.faults:
            kind = self._sequences.next_kind(content, directives.faults)
        else:
            kind = self._roller.roll(self._rng)
        if directives.latency_s is not None:
            latency = directives.latency_s
        else:
            latency = draw_latency(cfg, self._rng)
        if kind.isdigit():
            ra = directives.retry_after_s
            if ra is None:
                ra = {"429": cfg.retry_after_s, "503": cfg.fault_retry_after_s}.get(kind)
            headers += _retry_after(ra)
        return Verdict(kind, None, latency, headers, queue, phase)

    def _window_check(self, now: float, limit: int, window_s: float) -> Headers | None:
        """None when a request at ``now`` fits its calendar window, else the refusal's
        headers (the wait until the next window, LiteLLM's way)."""
        index = math.floor(now / window_s)
        current, used = self._window
        if index != current:
            current, used = index, 0
        if used < limit:
            self._window = (current, used + 1)
            return None
        self._window = (current, used)
        wait = (index + 1) * window_s - now
        return (("llm_provider-retry-after", str(max(1, math.ceil(wait - 1e-9)))),)

    def _rate_limiter(self, now: float) -> RateLimiter:
        if self._limiter is None:  # the buckets start full at the first request
            cfg = self._config
            assert cfg.rate_limit_per_s is not None
            self._limiter = RateLimiter(
                rate_per_s=cfg.rate_limit_per_s,
                burst=cfg.effective_burst,
                now=now,
                token_rate_per_s=cfg.token_rate_per_s,
                token_burst=cfg.token_burst,
                headers=cfg.rate_headers,
                retry_after_style=cfg.retry_after_style,
                reset_style=cfg.reset_style,
                retry_after_only=cfg.retry_after_only,
            )
        return self._limiter

    def __repr__(self) -> str:
        return f"<Decider origin={self._origin} limiter={self._limiter!r} {self.timeline!r}>"
