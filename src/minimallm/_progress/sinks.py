"""Where progress goes: a live bar, plain lines, a logger, or the user's own callable.

:func:`make_sink` picks one from the ``progress=`` argument of the batch entry points:

=====================  ===================================================================
``None`` (default)     ``MINIMALLM_PROGRESS``: ``auto`` (a bar on a terminal or in Jupyter,
                       plain lines otherwise: logs, SLURM), ``bar``, ``lines``, ``log``
                       (the ``minimallm`` logger), ``off``
a text stream          plain lines (``.write``)
a ``logging.Logger``   lines at INFO, failures and stalls at WARNING
a callable             every :class:`BatchProgress` snapshot (plug in tqdm, rich, ...)
=====================  ===================================================================

The bar is tqdm's (one small, well-kept, dependency-free package; it draws in a
terminal and, through ``tqdm.auto``, as a widget in Jupyter). rich would do as well
but brings pygments and markdown-it along, for one bar.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable
from typing import Any, Protocol, TextIO, TypeAlias

from minimallm._progress.snapshot import BatchProgress
from minimallm._progress.text import (
    format_duration,
    format_failure,
    format_stall,
    format_summary,
    format_tick,
)

__all__ = ["PROGRESS_ENV", "Progress", "ProgressSink", "make_sink"]

PROGRESS_ENV = "MINIMALLM_PROGRESS"
"""The environment switch: ``auto`` (default), ``bar``, ``lines``, ``log``, ``off``."""

Progress: TypeAlias = TextIO | logging.Logger | Callable[[BatchProgress], Any] | None
"""What ``progress=`` accepts (see the module docstring)."""

BAR_TICK_S = 0.25
CALLBACK_TICK_S = 1.0


class ProgressSink(Protocol):
    """Shows snapshots. ``tick_s``: how often it wants a ``tick`` (0: never)."""

    tick_s: float

    def show(self, p: BatchProgress) -> None:
        """Show one snapshot."""
        ...

    def close(self) -> None:
        """The batch is over (after the ``done`` snapshot)."""
        ...


class NullSink:
    """Shows nothing (``MINIMALLM_PROGRESS=off``)."""

    tick_s = 0.0

    def show(self, p: BatchProgress) -> None:
        """Nothing."""

    def close(self) -> None:
        """Nothing."""


class LinesSink:
    """Plain lines through ``write(line, warning)``: the heartbeat every ``heartbeat_s``
    (0: none), the first failures in full, stalls, the summary."""

    def __init__(self, write: Callable[[str, bool], None], heartbeat_s: float) -> None:
        self._write = write
        self.tick_s = heartbeat_s

    def show(self, p: BatchProgress) -> None:
        """Write the lines for ``p``."""
        if p.kind == "tick":
            for line in format_tick(p):
                self._write(line, False)
        elif p.kind == "failure" and p.failure is not None:
            self._write(format_failure(p.failure_number, p.failure), True)
        elif p.kind == "stall":
            for line in format_stall(p):
                self._write(line, True)
        elif p.kind == "done":
            for line in format_summary(p):
                self._write(line, False)

    def close(self) -> None:
        """Nothing to close."""


class CallbackSink:
    """Every snapshot to the user's callable, ticks once a second."""

    def __init__(self, fn: Callable[[BatchProgress], Any], heartbeat_s: float) -> None:
        self._fn = fn
        self.tick_s = 0.0 if heartbeat_s <= 0 else min(CALLBACK_TICK_S, heartbeat_s)

    def show(self, p: BatchProgress) -> None:
        """Call the user's function."""
        self._fn(p)

    def close(self) -> None:
        """Nothing to close."""


class BarSink:
    """A live tqdm bar: done/total, ETA from the work that needed the server, rate,
    failures, and what holds the client back; failures and stalls printed above it."""

    tick_s = BAR_TICK_S

    def __init__(self, stream: TextIO, *, notebook: bool) -> None:
        import tqdm as tqdm_module

        if notebook:
            import tqdm.auto

            self._tqdm: Any = tqdm.auto.tqdm
        else:
            self._tqdm = tqdm_module.tqdm
        self._stream = stream
        self._bar: Any = None

    def _ensure(self, p: BatchProgress) -> Any:
        if self._bar is None:
            self._bar = self._tqdm(
                total=p.total,
                desc="minimallm",
                unit="req",
                file=self._stream,
                dynamic_ncols=True,
                bar_format=_WITH_BAR
                if p.total is not None
                else "{desc} {n_fmt} done [{elapsed}{postfix}]",
                mininterval=0.0,
            )
        return self._bar

    def show(self, p: BatchProgress) -> None:
        """Move the bar, or print a failure, a stall or the summary above it."""
        bar = self._ensure(p)
        if p.kind == "failure" and p.failure is not None:
            bar.write(format_failure(p.failure_number, p.failure), file=self._stream)
        elif p.kind == "stall":
            bar.write("\n".join(format_stall(p)), file=self._stream)
        parts = [f"{p.done_rate:.1f}/s"]
        if p.total is not None:
            parts.append("ETA ?" if p.eta_s is None else f"ETA {format_duration(p.eta_s)}")
        if p.calls or p.calls_running:
            parts.append(f"LM calls {p.calls}")
        if p.failed:
            parts.append(f"failed {p.failed}")
        if p.binding:
            parts.append(f"held back by {p.binding}")
        postfix, with_bar = fit_postfix(parts, p, self._columns())
        if not with_bar and bar.bar_format != _NO_BAR:
            bar.bar_format = _NO_BAR
        elif with_bar and bar.bar_format == _NO_BAR:
            bar.bar_format = _WITH_BAR
        bar.set_postfix_str(postfix, refresh=False)  # tqdm puts ", " before it
        bar.n = p.done
        bar.refresh()
        if p.kind == "done":
            bar.close()
            for line in format_summary(p):
                print(line, file=self._stream, flush=True)

    def _columns(self) -> int:
        """The display's width (a notebook's: unbounded)."""
        if _in_notebook(self._stream):
            return 10_000
        try:
            return os.get_terminal_size(self._stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return 80

    def close(self) -> None:
        """Close the bar if the batch ended without a ``done`` snapshot."""
        if self._bar is not None and not self._bar.disable:
            self._bar.close()


_WITH_BAR = "{desc} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
_NO_BAR = "{desc} {percentage:3.0f}% {n_fmt}/{total_fmt} [{elapsed}{postfix}]"
_MIN_BAR = 10
"""Columns the bar itself needs to be worth showing."""


def fit_postfix(parts: list[str], p: BatchProgress, columns: int) -> tuple[str, bool]:
    """The bar's postfix for a display ``columns`` wide, and whether the bar itself
    fits too. What holds the batch back is the last thing dropped (it is what the
    display is for): first the bar goes, then the rate, the ETA, the failure count."""
    fixed = len(f"minimallm 100% {p.done}/{p.total} [0:00:00, ]") + 2  # a margin
    kept = list(parts)
    if fixed + len(", ".join(kept)) + _MIN_BAR + 2 <= columns:
        return ", ".join(kept), True
    for prefix in ("", "ETA", "failed"):  # the rate first ("" matches it: it is first)
        if fixed + len(", ".join(kept)) <= columns or len(kept) <= 1:
            break
        drop = next((x for x in kept if x.startswith(prefix) and not x.startswith("held")), None)
        if drop is not None:
            kept.remove(drop)
    return ", ".join(kept), False


def _in_notebook(stream: TextIO) -> bool:
    return "ipykernel" in sys.modules and type(stream).__name__ == "OutStream"


def _stderr_lines(line: str, warning: bool) -> None:
    print(line, file=sys.stderr, flush=True)  # looked up at write time: redirections work


def _logger_lines(logger: logging.Logger) -> Callable[[str, bool], None]:
    def write(line: str, warning: bool) -> None:
        logger.log(logging.WARNING if warning else logging.INFO, "%s", line)

    return write


def _stream_lines(stream: TextIO) -> Callable[[str, bool], None]:
    def write(line: str, warning: bool) -> None:
        stream.write(line + "\n")
        stream.flush()

    return write


def make_sink(progress: Progress, heartbeat_s: float) -> ProgressSink:
    """The sink for ``progress=`` (see the module docstring)."""
    if progress is None:
        mode = os.environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
        stream = sys.stderr
        if mode == "auto":
            interactive = _in_notebook(stream) or bool(getattr(stream, "isatty", bool)())
            mode = "bar" if interactive else "lines"
        if mode == "bar":
            return BarSink(stream, notebook=_in_notebook(stream))
        if mode == "lines":
            return LinesSink(_stderr_lines, heartbeat_s)
        if mode == "log":
            return LinesSink(_logger_lines(logging.getLogger("minimallm")), heartbeat_s)
        if mode == "off":
            return NullSink()
        raise ValueError(
            f"{PROGRESS_ENV}={mode!r} is not a progress mode; use auto, bar, lines, log or off"
        )
    if isinstance(progress, logging.Logger):
        return LinesSink(_logger_lines(progress), heartbeat_s)
    if callable(getattr(progress, "write", None)):
        return LinesSink(_stream_lines(progress), heartbeat_s)  # type: ignore[arg-type]
    if callable(progress):
        return CallbackSink(progress, heartbeat_s)
    raise TypeError(
        "progress must be a text stream, a logging.Logger, a callable taking BatchProgress "
        f"snapshots, or None; got {type(progress).__name__}"
    )
