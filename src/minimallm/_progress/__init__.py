"""Progress of a batch: typed snapshots (``snapshot``), their text (``text``) and where
they go (``sinks``). The Monitor actor (``actors/monitor.py``) drives them."""

from minimallm._progress.sinks import PROGRESS_ENV, Progress, ProgressSink, make_sink
from minimallm._progress.snapshot import BatchProgress, LatencyHistogram, ProgressTally
from minimallm._progress.text import (
    failure_summary,
    format_duration,
    format_failure,
    format_stall,
    format_summary,
    format_tick,
)

__all__ = [
    "PROGRESS_ENV",
    "BatchProgress",
    "LatencyHistogram",
    "Progress",
    "ProgressSink",
    "ProgressTally",
    "failure_summary",
    "format_duration",
    "format_failure",
    "format_stall",
    "format_summary",
    "format_tick",
    "make_sink",
]
