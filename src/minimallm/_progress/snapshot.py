"""A batch's progress as typed snapshots, and the tally that makes them (pure, no clock).

The Monitor actor owns one :class:`ProgressTally`, feeds it the batch's events with
their (trio) times, and hands :class:`BatchProgress` snapshots to whatever shows them:
a live bar, plain lines, a logger, or the user's own callable (tqdm, rich, a
dashboard). Everything a progress line says is in the snapshot.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from math import floor as _floor
from math import log as _log
from typing import Literal

from minimallm._progress.calls import CallCounts
from minimallm._types import MinimaLlmFailure

__all__ = ["BatchProgress", "LatencyHistogram", "ProgressKind", "ProgressTally"]

ProgressKind = Literal["tick", "failure", "stall", "done"]

_RATE_WINDOW_S = 60.0


@dataclass(frozen=True, slots=True)
class BatchProgress:
    """Where a batch stands. Times in seconds; rates per second.

    ``kind``: ``tick`` (periodic), ``failure`` (``failure`` holds one of the first
    failures), ``stall`` (nothing finished for ``stalled_s``), ``done`` (the last one).
    ``total`` is None when the input's length is unknown. ``attempts`` counts HTTP
    attempts as they happen; ``retries`` the attempts beyond each item's first, also as
    they happen (every attempt that did not succeed and was not its item's last).
    ``eta_s`` comes from the rate of items that needed the server (cache hits come in
    bulk and would make it lie). ``binding`` says which limit holds the client back now
    (None: none; the server's latency sets the pace). ``server_s`` is the median time
    the server took per attempt lately, ``waiting_s`` the median time items waited
    before their first attempt went out. Tokens are the servers' ``usage`` of the
    answers so far (cache hits used none): ``prompt_tokens`` (of which
    ``cached_tokens`` the server's own prompt cache served) and ``completion_tokens``
    (of which ``reasoning_tokens`` went to thinking); ``tokens_reported`` is False
    while no answer reported any. ``calls`` counts the LM calls made by the items' own
    code (``run_dspy_batch``: a DSPy program per item), ended so far, of which
    ``calls_cached`` came from the cache, and ``calls_running`` are under way; their
    tokens are in the token counts. All 0 for ``run_batched`` (see ``attempts``).
    """

    kind: ProgressKind
    elapsed_s: float
    total: int | None
    done: int
    ok: int
    cached: int
    failed: int
    none: int
    in_progress: int
    attempts: int
    retries: int
    send_rate: float
    done_rate: float
    eta_s: float | None
    binding: str | None
    server_s: float | None
    waiting_s: float | None
    prompt_tokens: int
    completion_tokens: int
    tokens_reported: bool
    latency_p50_s: float | None
    latency_p95_s: float | None
    failure: MinimaLlmFailure | None = None
    failure_number: int = 0
    stalled_s: float | None = None
    oldest_s: float | None = None
    http_in_flight: int | None = None
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    calls: int = 0
    calls_cached: int = 0
    calls_running: int = 0

    @property
    def total_tokens(self) -> int:
        """Prompt plus completion tokens used so far (what ``MAX_TOTAL_TOKENS`` bounds)."""
        return self.prompt_tokens + self.completion_tokens

    @property
    def fraction(self) -> float | None:
        """Done as a fraction of total (None when the total is unknown)."""
        if self.total is None:
            return None
        return 1.0 if self.total == 0 else self.done / self.total


_FLOOR_S = 1e-4
_RATIO = 1.02
_LOG_RATIO = math.log(_RATIO)  # what math.log(x, 1.02) divides by, computed once


class LatencyHistogram:
    """Latencies in log-spaced buckets (2 % wide): constant memory for any batch size,
    percentiles within 2 %."""

    __slots__ = ("_buckets",)

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}  # bucket: samples (the tally adds to it too)

    @property
    def count(self) -> int:
        """Samples recorded."""
        return sum(self._buckets.values())

    def add(self, seconds: float) -> None:
        """Record one latency (seconds)."""
        # floor, not int(): the same for the logarithm of a ratio >= 1, at a third of
        # the cost (int() of a float goes through the type's call)
        b = 0 if seconds <= _FLOOR_S else 1 + _floor(_log(seconds / _FLOOR_S) / _LOG_RATIO)
        buckets = self._buckets
        buckets[b] = buckets.get(b, 0) + 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) in seconds (bucket upper bound), None if empty."""
        count = self.count
        if not count:
            return None
        rank = max(1, math.ceil(count * q / 100.0))
        seen = 0
        for b in sorted(self._buckets):
            seen += self._buckets[b]
            if seen >= rank:
                return _FLOOR_S * _RATIO**b
        raise AssertionError("unreachable: ranks are bounded by the count")


class _Window:
    """Event times over the last ``window_s`` seconds, counted per second: the seconds
    before the latest in ``_buckets`` (``[second, count]``), the latest one in
    ``second`` and ``count``. An event before ``until`` (the end of the latest second,
    -inf while there is none) counts in the latest one: the tally's hot path does that
    inline (``if at < w.until: w.count += 1``) and calls :meth:`add` otherwise."""

    __slots__ = ("_buckets", "_window_s", "count", "second", "until")

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._buckets: deque[list[int]] = deque()  # [second, count], before ``second``
        self.second = 0
        self.count = 0
        self.until: float = -math.inf

    def add(self, at: float, count: int = 1) -> None:
        if at < self.until:  # the latest second or earlier: counted in the latest
            self.count += count
            return
        if self.until != -math.inf:
            self._buckets.append([self.second, self.count])
        self.second = second = _floor(at)
        self.count = count
        self.until = second + 1

    def rate(self, now: float, since: float) -> float:
        """Events per second over the window, or since ``since`` if that is later."""
        buckets = self._buckets
        oldest = now - self._window_s
        while buckets and buckets[0][0] < oldest:
            buckets.popleft()
        total = sum(b[1] for b in buckets)
        if self.until != -math.inf:
            if not buckets and self.second < oldest:  # the latest second is gone too
                self.until = -math.inf
            else:
                total += self.count
        span = min(self._window_s, now - since)
        if span <= 0:
            return 0.0
        return total / span


class ProgressTally:
    """Counters and recent rates of one batch: its item runners count each item as it
    ends, its Monitor folds the Workers' attempt reports in and shows it."""

    __slots__ = (
        "_attempt_times",
        "_done_times",
        "_failed_attempts",
        "_first_uncached",
        "_last_failed",
        "_latency_buckets",
        "_recent_server",
        "_recent_waiting",
        "attempts",
        "cached",
        "cached_tokens",
        "completion_tokens",
        "done",
        "failed",
        "last_done_at",
        "latency",
        "none",
        "ok",
        "prompt_tokens",
        "reasoning_tokens",
        "retries",
        "start",
        "tokens_reported",
        "total",
    )

    def __init__(self, total: int | None, start: float) -> None:
        self.total = total
        self.start = start
        self.last_done_at = start  # when the latest item ended (the Monitor's stall watch)
        self.done = self.ok = self.cached = self.failed = self.none = 0
        self.attempts = self.retries = 0
        self._failed_attempts = 0  # attempts that did not succeed, as they end
        self._last_failed = 0  # of those, the last of an item that failed
        self.prompt_tokens = self.completion_tokens = 0
        self.cached_tokens = self.reasoning_tokens = 0
        self.tokens_reported = False
        self.latency = LatencyHistogram()  # whole items, start to finish
        self._latency_buckets = self.latency._buckets  # item_finished adds to it inline
        self._attempt_times = _Window(_RATE_WINDOW_S)
        self._done_times = _Window(_RATE_WINDOW_S)
        self._first_uncached: float | None = None
        self._recent_server: deque[float] = deque(maxlen=256)
        self._recent_waiting: deque[float] = deque(maxlen=256)

    # -- events ---------------------------------------------------------------------------

    def item_finished(
        self,
        started: float,
        at: float,
        kind: str,
        attempts: int = 0,
        first_sent_at: float | None = None,
        prompt_tokens: int | None = None,
        completion_tokens: int | None = None,
        cached_tokens: int | None = None,
        reasoning_tokens: int | None = None,
        server_s: float | None = None,
    ) -> None:
        """An item begun at ``started`` ended at ``at`` as ``kind`` (ok, cached, failed,
        none), having used these tokens (None: not reported); ``server_s``: the server's
        time for the attempt that answered it, counted here as an attempt (the others
        come through :meth:`attempt_failed`)."""
        self.done += 1
        self.last_done_at = at
        if attempts > 1:
            self.retries += attempts - 1
        # the latency histogram's add, inline (a call costs as much as the rest)
        seconds = at - started  # <= 0 is the lowest bucket
        b = 0 if seconds <= _FLOOR_S else 1 + _floor(_log(seconds / _FLOOR_S) / _LOG_RATIO)
        buckets = self._latency_buckets
        buckets[b] = buckets.get(b, 0) + 1
        if first_sent_at is not None:
            waited = first_sent_at - started
            self._recent_waiting.append(waited if waited > 0.0 else 0.0)
        if prompt_tokens is not None or completion_tokens is not None:
            self.tokens_reported = True
            if prompt_tokens:
                self.prompt_tokens += prompt_tokens
            if completion_tokens:
                self.completion_tokens += completion_tokens
            if cached_tokens:
                self.cached_tokens += cached_tokens
            if reasoning_tokens:
                self.reasoning_tokens += reasoning_tokens
        if kind == "ok":
            self.ok += 1
        elif kind == "cached":
            self.ok += 1
            self.cached += 1
        elif kind == "none":
            self.none += 1
        else:
            self.failed += 1
            if attempts and kind == "failed":
                self._last_failed += 1
        if server_s is not None:
            self.attempts += 1
            w = self._attempt_times
            if at < w.until:  # the window's add, inline
                w.count += 1
            else:
                w.add(at)
            self._recent_server.append(server_s)
        if kind != "cached":
            w = self._done_times
            if at < w.until:
                w.count += 1
            else:
                w.add(at)
            if self._first_uncached is None:
                self._first_uncached = started

    def cached_in_bulk(self, count: int, at: float) -> None:
        """``count`` items were answered from the cache at once, at ``at``."""
        self.last_done_at = at
        self.done += count
        self.ok += count
        self.cached += count

    def attempt_failed(self, sent_at: float, done_at: float, answered: bool) -> None:
        """An HTTP attempt ended without answering its item (the server answered, or
        not); one that answered comes with its item (:meth:`item_finished`)."""
        self.attempts += 1
        self._failed_attempts += 1
        self._attempt_times.add(done_at)
        if answered:
            self._recent_server.append(max(0.0, done_at - sent_at))

    # -- reading --------------------------------------------------------------------------

    @property
    def live_retries(self) -> int:
        """The attempts sent again so far: those of finished items (exact), or, while
        items wait to be sent again, every attempt that failed and was not the last of
        a failed item (the reports are lossy when the Monitor is behind: the larger)."""
        return max(self.retries, self._failed_attempts - self._last_failed)

    def eta(self, now: float) -> float | None:
        """Seconds until done at the rate of items that needed the server, or None."""
        if self.total is None:
            return None
        left = self.total - self.done
        if left <= 0:
            return 0.0
        if self._first_uncached is None:  # no item needed the server yet
            return None
        rate = self._done_times.rate(now, self._first_uncached)
        return None if rate <= 0 else left / rate

    def snapshot(
        self,
        kind: ProgressKind,
        now: float,
        *,
        binding: str | None = None,
        http_in_flight: int | None = None,
        failure: MinimaLlmFailure | None = None,
        failure_number: int = 0,
        stalled_s: float | None = None,
        calls: CallCounts | None = None,
        in_progress: int = 0,
        oldest_start: float | None = None,
    ) -> BatchProgress:
        """A frozen snapshot at ``now``; ``calls``: the LM calls the items made;
        ``in_progress``: items begun and not finished, the oldest at ``oldest_start``."""
        since = self.start
        c = calls or _NO_CALLS
        return BatchProgress(
            kind=kind,
            elapsed_s=max(0.0, now - self.start),
            total=self.total,
            done=self.done,
            ok=self.ok,
            cached=self.cached,
            failed=self.failed,
            none=self.none,
            in_progress=in_progress,
            attempts=self.attempts,
            retries=self.live_retries,
            send_rate=self._attempt_times.rate(now, since),
            done_rate=self._done_times.rate(now, since),
            eta_s=self.eta(now),
            binding=binding,
            server_s=_median(self._recent_server),
            waiting_s=_median(self._recent_waiting),
            prompt_tokens=self.prompt_tokens + c.prompt_tokens,
            completion_tokens=self.completion_tokens + c.completion_tokens,
            tokens_reported=self.tokens_reported or c.tokens_reported,
            latency_p50_s=self.latency.percentile(50),
            latency_p95_s=self.latency.percentile(95),
            failure=failure,
            failure_number=failure_number,
            stalled_s=stalled_s,
            oldest_s=None if oldest_start is None else max(0.0, now - oldest_start),
            http_in_flight=http_in_flight,
            cached_tokens=self.cached_tokens + c.cached_tokens,
            reasoning_tokens=self.reasoning_tokens + c.reasoning_tokens,
            calls=c.ended,
            calls_cached=c.cached,
            calls_running=c.running,
        )


_NO_CALLS = CallCounts()


def _median(values: deque[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]
