"""The Monitor folds a burst of events in one loop (actors/monitor.py: _record_all, each
item unpacked at once): it shows what the per-event reading it replaced showed (each
field of an item read by name and handed to the tally by keyword), failures in the
middle of a burst included, with the tally as it stands at each of them."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm import BatchConfig
from minimallm._batch.items import ItemResult
from minimallm._progress import ProgressTally
from minimallm._progress.snapshot import BatchProgress
from minimallm._types import MinimaLlmFailure
from minimallm.actors.messages import AttemptReport
from minimallm.actors.monitor import CachedItems, ItemFinished, Monitor, MonitorEvent


def reference(events: list[MonitorEvent], cfg: BatchConfig, total: int) -> list[BatchProgress]:
    """What the Monitor showed before: one event at a time, fields read by name."""
    tally = ProgressTally(total, 0.0)
    shown: list[BatchProgress] = []
    printed = 0
    for e in events:
        if isinstance(e, ItemFinished):
            r = e.result
            tally.item_finished(
                e.started_at,
                e.at,
                r.kind,
                attempts=r.attempts,
                first_sent_at=r.first_sent_at,
                prompt_tokens=r.prompt_tokens,
                completion_tokens=r.completion_tokens,
                cached_tokens=r.cached_tokens,
                reasoning_tokens=r.reasoning_tokens,
                server_s=r.server_s,
            )
            if r.failure is not None and printed < cfg.print_first_failures:
                printed += 1
                snap = tally.snapshot("failure", e.at, failure=r.failure, failure_number=printed)
                shown.append(snap)
        elif isinstance(e, AttemptReport):
            tally.attempt_failed(e.sent_at, e.done_at, e.answered)
        else:
            tally.cached_in_bulk(e.hits)
    shown.append(tally.snapshot("done", 0.0, failure_number=printed))
    return shown


def shown_by_the_monitor(events: list[MonitorEvent], cfg: BatchConfig, total: int) -> list[Any]:
    shown: list[Any] = []

    class Sink:
        tick_s = 0.0

        def show(self, p: Any) -> None:
            shown.append(p)

        def close(self) -> None:
            pass

    async def main() -> None:
        events_in, inbox = trio.open_memory_channel[MonitorEvent](len(events) + 1)
        for e in events:  # all waiting: the Monitor takes them as one burst
            events_in.send_nowait(e)
        await events_in.aclose()
        await Monitor(cfg, total, inbox, Sink()).run()

    trio.run(main, clock=trio.testing.MockClock())  # time stands at 0.0
    return shown


_failure = MinimaLlmFailure(request_id="r", error_type="HTTPError", message="HTTP 500", attempts=2)
_opt_int = st.one_of(st.none(), st.integers(0, 10**6))
_opt_time = st.one_of(st.none(), st.floats(0.0, 5.0))
_result = st.builds(
    ItemResult,
    st.none(),
    st.sampled_from(["ok", "cached", "failed", "none"]),
    st.integers(0, 3),
    _opt_time,
    _opt_int,
    _opt_int,
    st.one_of(st.none(), st.just(_failure)),
    _opt_int,
    _opt_int,
    _opt_time,
)
_item = st.builds(
    ItemFinished, st.integers(0, 99), st.floats(0.0, 50.0), st.floats(0.0, 90.0), _result
)
_report = st.builds(
    AttemptReport,
    st.floats(0.0, 50.0),
    st.floats(0.0, 90.0),
    st.sampled_from(["overload", "failed", "timeout", "broken"]),
)
_bulk = st.builds(CachedItems, st.integers(0, 20), st.floats(0.0, 90.0))


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(_item, _item, _item, _report, _bulk), max_size=60), st.integers(0, 3))
def test_a_burst_shows_what_one_event_at_a_time_showed(
    events: list[MonitorEvent], first_failures: int
) -> None:
    cfg = BatchConfig(print_first_failures=first_failures, stall_s=1e9)
    assert shown_by_the_monitor(events, cfg, 100) == reference(events, cfg, 100)


def test_the_reference_tells_swapped_token_counts_apart() -> None:
    """Cached and reasoning tokens handed over the other way round change the summary."""
    cfg = BatchConfig(stall_s=1e9)
    item = ItemFinished(0, 0.0, 1.0, ItemResult(None, "ok", 1, 0.0, 10, 5, None, 3, 2, 0.5))
    swapped = item._replace(result=item.result._replace(cached_tokens=2, reasoning_tokens=3))
    assert shown_by_the_monitor([item], cfg, 1) == reference([item], cfg, 1)
    assert shown_by_the_monitor([item], cfg, 1) != reference([swapped], cfg, 1)
