"""The live display of a provider batch: the provider's own counts, per batch.

The same modes as a live run's progress (``MINIMALLM_PROGRESS``): ``auto`` is a
one-line display redrawn in place on a terminal and plain lines elsewhere (logs,
SLURM); ``bar``, ``lines``, ``log`` (the ``minimallm`` logger), ``off``; ``--quiet``
is ``off``. Plain lines are printed when something changed (a status, a count), and
at least every ``heartbeat_s`` seconds otherwise. A batch reads::

    batch 2/3 batch_abc123: in_progress 12,345/50,000 (12 failed), expires 2026-12-07 19:02 UTC
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from typing import TextIO

from minimallm._progress import PROGRESS_ENV
from minimallm.cli.provider_batch._state import Chunk

__all__ = ["BatchDisplay", "describe_chunk"]


def _when(stamp: object) -> str:
    if not isinstance(stamp, int | float):
        return "?"
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(stamp))


def describe_chunk(chunk: Chunk, number: int, of: int) -> str:
    """One batch on one line (its status, the provider's counts, when it expires)."""
    label = f"batch {number}/{of}"
    if chunk.batch_id is None:
        what = "uploading" if chunk.status == "uploading" else "not yet uploaded"
        if chunk.file_id is not None:
            what = "uploaded, creating the batch"
        return f"{label}: {what} ({chunk.lines:,} requests, {chunk.bytes / 1e6:.1f} MB)"
    info = chunk.info
    counts = info.get("request_counts") or {}
    done = int(counts.get("completed") or 0) + int(counts.get("failed") or 0)
    total = int(counts.get("total") or chunk.lines)
    failed = int(counts.get("failed") or 0)
    text = f"{label} {chunk.batch_id}: {chunk.status} {done:,}/{total:,}"
    if failed:
        text += f" ({failed:,} failed)"
    if chunk.collected:
        text += ", collected"
    elif chunk.status not in ("completed", "expired", "cancelled", "failed"):
        text += f", expires {_when(info.get('expires_at'))}"
    return text


class BatchDisplay:
    """Shows the batches of a run on ``stream`` in the chosen mode."""

    def __init__(self, stream: TextIO, *, quiet: bool, heartbeat_s: float = 60.0) -> None:
        mode = "off" if quiet else os.environ.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
        if mode == "auto":
            mode = "bar" if getattr(stream, "isatty", bool)() else "lines"
        if mode not in ("bar", "lines", "log", "off"):
            print(f"minimallm: {PROGRESS_ENV}={mode!r} is not a progress mode (auto, bar, "
                  "lines, log or off): showing plain lines", file=stream)  # fmt: skip
            mode = "lines"
        self._mode = mode
        self._stream = stream
        self._heartbeat_s = heartbeat_s
        self._last: list[str] = []
        self._last_at = 0.0
        self._drawn = False

    def show(self, chunks: Sequence[Chunk], note: str = "") -> None:
        """Show the batches as they are now (``note``: e.g. when the next poll is)."""
        lines = [describe_chunk(c, i, len(chunks)) for i, c in enumerate(chunks, 1)]
        if self._mode == "off":
            return
        now = time.monotonic()
        if self._mode == "bar":
            active = [line for c, line in zip(chunks, lines, strict=True) if not c.collected]
            summary = "; ".join(active) or "all batches collected"
            self._stream.write("\r\x1b[2K" + (summary + note)[:200])
            self._stream.flush()
            self._drawn = True
            return
        if lines == self._last and now - self._last_at < self._heartbeat_s:
            return
        changed = [line for line in lines if line not in self._last] or lines
        self._last, self._last_at = lines, now
        for line in changed:
            if self._mode == "log":
                logging.getLogger("minimallm").info("%s", line)
            else:
                print(line, file=self._stream, flush=True)

    def close(self) -> None:
        """End the in-place line, if one was drawn."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
