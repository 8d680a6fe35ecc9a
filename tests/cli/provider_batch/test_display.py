"""The live display of provider batches: the provider's counts per batch, plain lines
only when something changed, an in-place line on a terminal, nothing with --quiet."""

from __future__ import annotations

import io

import pytest

from minimallm.cli.provider_batch._display import BatchDisplay, describe_chunk
from minimallm.cli.provider_batch._state import Chunk

INFO = {"request_counts": {"total": 500, "completed": 120, "failed": 3}, "expires_at": 0}


def chunk(status: str | None, batch_id: str | None = "batch_1", collected: bool = False) -> Chunk:
    return Chunk(1, "n", 500, 2_000_000, "file_1", batch_id, status, INFO, collected)


def test_a_batch_reads_as_the_provider_counts_it() -> None:
    assert describe_chunk(chunk("in_progress"), 1, 3) == (
        "batch 1/3 batch_1: in_progress 123/500 (3 failed), expires 1970-01-01 00:00 UTC"
    )
    assert describe_chunk(chunk("completed", collected=True), 2, 3) == (
        "batch 2/3 batch_1: completed 123/500 (3 failed), collected"
    )
    assert describe_chunk(chunk(None, batch_id=None), 3, 3) == (
        "batch 3/3: uploaded, creating the batch (500 requests, 2.0 MB)"
    )


def test_lines_mode_prints_changes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINIMALLM_PROGRESS", "lines")
    out = io.StringIO()
    display = BatchDisplay(out, quiet=False)
    display.show([chunk("validating")])
    display.show([chunk("validating")])
    display.show([chunk("in_progress")])
    assert [line.split(":")[1].split()[0] for line in out.getvalue().splitlines()] == [
        "validating", "in_progress",
    ]  # fmt: skip


def test_bar_mode_redraws_one_line_and_quiet_shows_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MINIMALLM_PROGRESS", "bar")
    out = io.StringIO()
    display = BatchDisplay(out, quiet=False)
    display.show([chunk("in_progress")], "  (next look in 2 s)")
    display.close()
    assert out.getvalue().startswith("\r\x1b[2K") and out.getvalue().endswith("2 s)\n")
    quiet = io.StringIO()
    BatchDisplay(quiet, quiet=True).show([chunk("in_progress")])
    assert quiet.getvalue() == ""
