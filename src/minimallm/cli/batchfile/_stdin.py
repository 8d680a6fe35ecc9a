"""The input of ``run-batch`` as a path: ``-`` (stdin) is spooled to a temporary file,
since the two passes of :mod:`._scan` read it twice."""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["input_file"]


@contextlib.contextmanager
def input_file(name: str) -> Iterator[Path]:
    """The input as a path: ``"-"`` copies stdin to a temporary file (two passes need
    to read it twice; the copy is deleted on exit), anything else is that path."""
    if name != "-":
        yield Path(name)
        return
    fd, tmp = tempfile.mkstemp(prefix="minimallm-stdin-", suffix=".jsonl")
    try:
        with os.fdopen(fd, "wb") as f:
            shutil.copyfileobj(sys.stdin.buffer, f, 1 << 20)
        yield Path(tmp)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
