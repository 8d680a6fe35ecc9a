"""``run-batch --retry-failed``: send the requests recorded in ERRORS again.

OUTPUT holds answers in input order, so an answer to a line that failed before must
go in the middle of it. Rather than rewriting OUTPUT, the files are turned into the
state an interrupted run leaves, which the ordinary resume then finishes:

1. the answers in OUTPUT after the first failure are moved to the spill file
   (:mod:`._spill`, each with the hash of its input line), merged with what is there;
2. OUTPUT is cut just before the first failure;
3. ERRORS is emptied (its lines are the requests to send again).

The resume that follows writes the kept answers in their place and sends only the
failed requests (and any never sent). A crash between the steps leaves files a resume
accepts: after 1, OUTPUT and ERRORS are untouched (the spill entries for lines already
in OUTPUT are ignored); after 2, ERRORS still accounts for the first failure and the
lines after it are in the spill or sent. The answers after the first failure are held
in memory while the resume runs (about the size of that part of OUTPUT).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from minimallm.cli.batchfile._hashes import line_hash
from minimallm.cli.batchfile._lines import check_line
from minimallm.cli.batchfile._resume import done_lines
from minimallm.cli.batchfile._scan import BatchPlan
from minimallm.cli.batchfile._spill import Held, write_spill

__all__ = ["move_failures_out"]


def _requests(path: Path) -> Iterator[tuple[str, bytes]]:
    with path.open("rb") as f:
        for raw in f:
            checked = check_line(raw)  # valid: pass 1 checked every line
            if checked is not None:
                yield checked[0], raw


def _lines(path: Path) -> Iterator[bytes]:
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        yield from f


def move_failures_out(
    plan: BatchPlan, output: Path, errors: Path, spill: Path, held: dict[str, Held]
) -> int:
    """Steps 1-3 of the module docstring for ``plan`` (a resume plan of these files);
    ``held`` (the spill's current entries) is updated. Returns the failures to retry."""
    if not plan.done_failed:
        return 0
    out_ids = done_lines(output, "OUTPUT")
    err_ids = done_lines(errors, "ERRORS")
    out_raw = _lines(output)
    out_head, err_head = next(out_ids, None), next(err_ids, None)
    keep = 0  # bytes of OUTPUT before the first failure
    tail = False
    for n, (custom_id, raw) in enumerate(_requests(plan.path)):
        if n >= plan.done:
            break
        if out_head is not None and out_head.custom_id == custom_id:
            line = next(out_raw)
            if tail:
                held[custom_id] = Held(custom_id, line_hash(raw), True, line)
            else:
                keep = out_head.end
            out_head = next(out_ids, None)
        elif err_head is not None and err_head.custom_id == custom_id:
            tail = True
            held.pop(custom_id, None)
            err_head = next(err_ids, None)
    write_spill(spill, held.values())
    os.truncate(output, keep)
    os.truncate(errors, 0)
    return plan.done_failed
