"""The live bar in a narrow terminal keeps what holds the batch back (issue 19): at 80
columns it drops the bar, then the rate, the ETA and the failure count before it ever
cuts "held back by ..."."""

from __future__ import annotations

import io

import pytest

from minimallm._progress.sinks import BarSink, fit_postfix
from minimallm._progress.snapshot import BatchProgress, ProgressTally

BINDING = "server rate ~100/s (its headers)"


def snapshot(binding: str | None = BINDING, failed: int = 0) -> BatchProgress:
    tally = ProgressTally(3000, 0.0)
    tally.done, tally.failed = 1350, failed
    return tally.snapshot("heartbeat", 10.0, binding=binding)


@pytest.mark.parametrize("columns", [80, 100, 120, 200])
def test_the_bar_keeps_held_back_by_at_every_width(columns: int) -> None:
    stream = io.StringIO()
    sink = BarSink(stream, notebook=False)
    sink._columns = lambda: columns  # type: ignore[method-assign]
    sink.show(snapshot(failed=3))
    line = stream.getvalue().split("\r")[-1]
    assert f"held back by {BINDING}]" in line, line
    assert len(line) <= columns, (len(line), line)


def test_parts_are_dropped_in_order_of_importance() -> None:
    parts = ["120.5/s", "ETA 0:00:13", "failed 3", f"held back by {BINDING}"]
    p = snapshot()
    assert fit_postfix(parts, p, 200) == (", ".join(parts), True)
    assert fit_postfix(parts, p, 110) == (f"ETA 0:00:13, failed 3, held back by {BINDING}", False)
    assert fit_postfix(parts, p, 95) == (f"failed 3, held back by {BINDING}", False)
    assert fit_postfix(parts, p, 80) == (f"held back by {BINDING}", False)
