"""The Monitor folds a burst of events in one loop (actors/monitor.py: _record_all): it
shows what reading them one at a time shows (the Workers' attempt reports folded into
the batch's tally, the first failures shown with the tally as it stands at each of
them), whatever the engine already counted in the tally."""

from __future__ import annotations

from typing import Any

import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm import BatchConfig
from minimallm._progress import ProgressTally
from minimallm._progress.snapshot import BatchProgress
from minimallm._types import MinimaLlmFailure
from minimallm.actors.messages import AttemptReport
from minimallm.actors.monitor import ItemFailed, Monitor, MonitorEvent


def counted(items: list[tuple[float, float, str]], total: int) -> ProgressTally:
    """The engine's record: each item counted as it ended."""
    tally = ProgressTally(total, 0.0)
    for started, at, kind in items:
        tally.item_finished(started, at, kind, attempts=1, first_sent_at=started, server_s=0.1)
    return tally


def reference(
    items: list[tuple[float, float, str]], events: list[MonitorEvent], cfg: BatchConfig
) -> list[BatchProgress]:
    """One event at a time, fields read by name."""
    tally = counted(items, 100)
    shown: list[BatchProgress] = []
    printed = 0
    for e in events:
        if isinstance(e, ItemFailed):
            if printed < cfg.print_first_failures:
                printed += 1
                shown.append(
                    tally.snapshot("failure", e.at, failure=e.failure, failure_number=printed)
                )
        else:
            tally.attempt_failed(e.sent_at, e.done_at, e.answered)
    shown.append(tally.snapshot("done", 0.0, failure_number=printed))
    return shown


def shown_by_the_monitor(
    items: list[tuple[float, float, str]], events: list[MonitorEvent], cfg: BatchConfig
) -> list[Any]:
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
        await Monitor(cfg, counted(items, 100), inbox, Sink()).run()

    trio.run(main, clock=trio.testing.MockClock())  # time stands at 0.0
    return shown


_failure = MinimaLlmFailure(request_id="r", error_type="HTTPError", message="HTTP 500", attempts=2)
_items = st.lists(
    st.tuples(
        st.floats(0.0, 50.0), st.floats(0.0, 90.0), st.sampled_from(["ok", "cached", "failed"])
    ),
    max_size=20,
)
_failed = st.builds(ItemFailed, st.floats(0.0, 90.0), st.just(_failure))
_report = st.builds(
    AttemptReport,
    st.floats(0.0, 50.0),
    st.floats(0.0, 90.0),
    st.sampled_from(["overload", "failed", "timeout", "broken"]),
)


@settings(max_examples=150, deadline=None)
@given(_items, st.lists(st.one_of(_failed, _report, _report), max_size=60), st.integers(0, 3))
def test_a_burst_shows_what_one_event_at_a_time_showed(
    items: list[tuple[float, float, str]], events: list[MonitorEvent], first_failures: int
) -> None:
    cfg = BatchConfig(print_first_failures=first_failures, stall_s=1e9)
    assert shown_by_the_monitor(items, events, cfg) == reference(items, events, cfg)


def test_the_reference_tells_the_first_failures_apart() -> None:
    """Showing one failure more (or fewer) changes what is shown."""
    events: list[MonitorEvent] = [ItemFailed(1.0, _failure), ItemFailed(2.0, _failure)]
    one, two = BatchConfig(print_first_failures=1), BatchConfig(print_first_failures=2)
    assert shown_by_the_monitor([], events, one) == reference([], events, one)
    assert shown_by_the_monitor([], events, one) != reference([], events, two)
