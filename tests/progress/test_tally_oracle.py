"""The tally's per-item path (_progress/snapshot.py: item_finished inline, windows
that count the latest second in place, the latency count kept by its buckets) against
a frozen copy of the tally as it was (the oracle): every snapshot the same, bit for
bit, for any order of events, at any times (also going back, as a failure's own time
does), with every kind of item. A change meant to alter what the tally shows ends this
test's use: delete it with its oracle rather than bend the comparison."""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from minimallm._progress.calls import CallCounts
from minimallm._progress.snapshot import BatchProgress, ProgressKind, ProgressTally, _Window
from minimallm._types import MinimaLlmFailure

_RATE_WINDOW_S = 60.0
_NO_CALLS = CallCounts()


def _median(values: deque[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


# --- frozen copy of the code before (do not edit) -----------------------------------


class _OldHistogram:
    """Latencies in log-spaced buckets (2 % wide): constant memory for any batch size,
    percentiles within 2 %."""

    __slots__ = ("_buckets", "_count")
    _RATIO = 1.02
    _LOG_RATIO = math.log(_RATIO)  # what math.log(x, 1.02) divides by, computed once
    _FLOOR_S = 1e-4

    def __init__(self) -> None:
        self._buckets: dict[int, int] = {}
        self._count = 0

    @property
    def count(self) -> int:
        """Samples recorded."""
        return self._count

    def add(self, seconds: float) -> None:
        """Record one latency (seconds)."""
        b = (
            0
            if seconds <= self._FLOOR_S
            else 1 + int(math.log(seconds / self._FLOOR_S) / self._LOG_RATIO)
        )
        buckets = self._buckets
        buckets[b] = buckets.get(b, 0) + 1
        self._count += 1

    def percentile(self, q: float) -> float | None:
        """The q-th percentile (0..100) in seconds (bucket upper bound), None if empty."""
        if not self._count:
            return None
        rank = max(1, math.ceil(self._count * q / 100.0))
        seen = 0
        for b in sorted(self._buckets):
            seen += self._buckets[b]
            if seen >= rank:
                return self._FLOOR_S * self._RATIO**b
        raise AssertionError("unreachable: ranks are bounded by the count")


class _OldWindow:
    """Event times over the last ``window_s`` seconds (per-second buckets)."""

    __slots__ = ("_buckets", "_window_s")

    def __init__(self, window_s: float) -> None:
        self._window_s = window_s
        self._buckets: deque[list[float]] = deque()  # [second, count]

    def add(self, at: float, count: int = 1) -> None:
        second = math.floor(at)
        if self._buckets and self._buckets[-1][0] >= second:
            self._buckets[-1][1] += count
        else:
            self._buckets.append([second, count])

    def rate(self, now: float, since: float) -> float:
        """Events per second over the window, or since ``since`` if that is later."""
        while self._buckets and self._buckets[0][0] < now - self._window_s:
            self._buckets.popleft()
        span = min(self._window_s, now - since)
        if span <= 0:
            return 0.0
        return sum(b[1] for b in self._buckets) / span


class OldTally:
    """ProgressTally as it was before item_finished was made cheaper (the oracle)."""

    __slots__ = (
        "_attempt_times",
        "_done_times",
        "_failed_attempts",
        "_first_uncached",
        "_last_failed",
        "_recent_server",
        "_recent_waiting",
        "_uncached_done",
        "attempts",
        "cached",
        "cached_tokens",
        "completion_tokens",
        "done",
        "failed",
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
        self.done = self.ok = self.cached = self.failed = self.none = 0
        self.attempts = self.retries = 0
        self._failed_attempts = 0  # attempts that did not succeed, as they end
        self._last_failed = 0  # of those, the last of an item that failed
        self.prompt_tokens = self.completion_tokens = 0
        self.cached_tokens = self.reasoning_tokens = 0
        self.tokens_reported = False
        self.latency = _OldHistogram()  # whole items, start to finish
        self._attempt_times = _OldWindow(_RATE_WINDOW_S)
        self._done_times = _OldWindow(_RATE_WINDOW_S)
        self._uncached_done = 0
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
        if attempts > 1:
            self.retries += attempts - 1
        if kind == "failed" and attempts:
            self._last_failed += 1
        self.latency.add(at - started)  # <= 0 is the lowest bucket
        if first_sent_at is not None:
            waited = first_sent_at - started
            self._recent_waiting.append(waited if waited > 0.0 else 0.0)
        if prompt_tokens is not None or completion_tokens is not None:
            self.tokens_reported = True
            self.prompt_tokens += prompt_tokens or 0
            self.completion_tokens += completion_tokens or 0
            self.cached_tokens += cached_tokens or 0
            self.reasoning_tokens += reasoning_tokens or 0
        if kind == "ok":
            self.ok += 1
        elif kind == "cached":
            self.ok += 1
            self.cached += 1
        elif kind == "none":
            self.none += 1
        else:
            self.failed += 1
        if server_s is not None:
            self.attempts += 1
            self._attempt_times.add(at)
            self._recent_server.append(server_s)
        if kind != "cached":
            self._uncached_done += 1
            self._done_times.add(at)
            if self._first_uncached is None:
                self._first_uncached = started

    def cached_in_bulk(self, count: int, at: float) -> None:
        """``count`` items were answered from the cache at once (at ``at``: no rate)."""
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
        if self._first_uncached is None or not self._uncached_done:
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


# --- the test ------------------------------------------------------------------------

# whole seconds too: the windows count per second, and an edge is where they could differ
_times = st.one_of(
    st.floats(-5.0, 200.0, allow_nan=False),
    st.integers(-2, 12).map(float),
    st.integers(-4, 24).map(lambda n: n / 2),
)
_small = st.one_of(st.none(), st.floats(0.0, 1.0), st.floats(1e-6, 2e-4))
_tokens = st.one_of(st.none(), st.integers(0, 3), st.integers(0, 10**6))
_kinds = st.sampled_from(["ok", "cached", "failed", "none"])

_item = st.tuples(
    st.just("item"),
    _times,  # started
    st.one_of(
        st.floats(0.0, 3.0), st.floats(0.0, 1e-3), st.floats(-1.0, 0.0), st.sampled_from([0.0, 1.0])
    ),  # duration
    _kinds,
    st.sampled_from([0, 0, 1, 1, 2, 4]),  # attempts
    _small,  # first sent, after started
    _tokens,
    _tokens,
    _tokens,
    _tokens,
    _small,  # server_s
)
_failed = st.tuples(st.just("attempt"), _times, _small, st.booleans())
_bulk = st.tuples(st.just("bulk"), st.integers(0, 50), _times)
_snap = st.tuples(st.just("snap"), _times, st.sampled_from(["tick", "failure", "stall", "done"]))


def _apply(tally: Any, event: tuple[Any, ...]) -> BatchProgress | None:
    what = event[0]
    if what == "item":
        _, started, duration, kind, tries, sent, p, c, ca, re, server = event
        tally.item_finished(
            started, started + duration, kind, tries, None if sent is None else started + sent,
            p, c, ca, re, server,
        )  # fmt: skip
    elif what == "attempt":
        _, sent_at, took, answered = event
        tally.attempt_failed(sent_at, sent_at + (took or 0.0), answered)
    elif what == "bulk":
        tally.cached_in_bulk(event[1], event[2])
    else:
        shown: ProgressKind = event[2]
        snap: BatchProgress = tally.snapshot(
            shown, event[1], in_progress=2, oldest_start=event[1] - 1.0
        )
        return snap
    return None


@settings(max_examples=400)
@given(
    st.integers(0, 500) | st.none(),
    st.lists(st.one_of(_item, _item, _item, _failed, _bulk, _snap), max_size=120),
    st.booleans(),
    st.booleans(),
)
@example(  # two items on the edges of two seconds, and a window that starts between
    total=5,
    events=[
        ("item", 4.0, 0.0, "ok", 1, None, None, None, None, None, 0.5),
        ("item", 5.0, 0.0, "ok", 1, None, None, None, None, None, 0.5),
        ("snap", 6.5, "tick"),
    ],
    monotonic=False,
    short=True,
)
def test_every_snapshot_is_the_one_the_tally_before_made(
    total: int | None, events: list[tuple[Any, ...]], monotonic: bool, short: bool
) -> None:
    if monotonic:  # the usual run: times that only go forward
        events = sorted(events, key=lambda e: e[1] if isinstance(e[1], float) else 0.0)
    new, old = ProgressTally(total, 0.0), OldTally(total, 0.0)
    if short:  # rate windows of 2 s: the edges of a second and of the window meet often
        new._attempt_times, new._done_times = _Window(2.0), _Window(2.0)
        old._attempt_times, old._done_times = _OldWindow(2.0), _OldWindow(2.0)
    for event in [*events, ("snap", 300.0, "done")]:
        assert _apply(new, event) == _apply(old, event), event
        assert (new.done, new.latency.count) == (old.done, old.latency.count)
    assert new.latency.percentile(50) == old.latency.percentile(50)


_grid = st.integers(-4, 16).map(lambda n: n / 2)  # whole and half seconds


@settings(max_examples=400)
@given(
    st.sampled_from([1.0, 2.0, 2.5]),
    st.lists(st.tuples(st.booleans(), _grid, _grid, st.integers(1, 3)), max_size=40),
)
def test_the_window_counts_as_it_did_at_every_edge_of_a_second(
    window_s: float, ops: list[tuple[bool, float, float, int]]
) -> None:
    """A short window and times on whole and half seconds: events on a second's edge,
    rates whose window starts on one, times going back."""
    new, old = _Window(window_s), _OldWindow(window_s)
    for is_add, at, since, count in ops:
        if is_add:
            new.add(at, count)
            old.add(at, count)
        else:
            assert new.rate(at, since) == old.rate(at, since), (at, since)


def test_the_oracle_tells_a_changed_bucket_apart() -> None:
    """A latency one bucket off changes the percentiles: the comparison above sees it."""
    new, old = ProgressTally(1, 0.0), OldTally(1, 0.0)
    new.item_finished(0.0, 0.0102, "ok")
    old.item_finished(0.0, 0.0102 * 1.02, "ok")
    assert new.snapshot("done", 1.0) != old.snapshot("done", 1.0)
