"""Answers received but not yet written, kept across an interruption: ``OUTPUT.pending``.

OUTPUT is written in input order, so when a run stops (Ctrl-C, SIGTERM, SIGHUP, an
abort) the answers that finished behind a slower line cannot go to OUTPUT yet. Without
a cache they would be lost and paid for again. The run writes them to a spill file
beside OUTPUT instead, out of order, each with the hash of its input line; the next
run reads it, does not send those lines again, and writes each kept answer in its
place. The spill file is written whole (a temporary file renamed over it), so a crash
while writing it leaves the previous one; it is removed when the run completes.

Why a spill file rather than a default cache beside OUTPUT: it costs nothing while the
run goes well (written only when the run stops), holds only what OUTPUT is missing
(at most the reorder window), and it is keyed on the exact input line, so an edited
line is sent again instead of getting the old line's answer.

Each line: ``{"custom_id": ..., "hash": <blake2b of the input line>, "ok": true|false,
"line": <the OUTPUT (ok) or ERRORS line, without its newline>}``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Held", "read_spill", "spill_path", "write_spill"]


def spill_path(output: str) -> Path:
    """The spill file of ``output``: ``out.jsonl`` -> ``out.jsonl.pending``."""
    return Path(output + ".pending")


@dataclass(frozen=True, slots=True)
class Held:
    """One result kept for a later run: its id, the hash of its input line, whether it
    is an answer (OUTPUT) or a failure (ERRORS), and the line to write (newline
    included)."""

    custom_id: str
    hash: str
    ok: bool
    line: bytes


def read_spill(path: Path) -> dict[str, Held]:
    """The results kept in ``path`` by custom_id (empty if there is no such file).
    Lines that are not spill lines (a torn last one) are skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    held: dict[str, Held] = {}
    for raw in data.splitlines():
        try:
            obj = json.loads(raw)
            entry = Held(
                obj["custom_id"],
                obj["hash"],
                bool(obj["ok"]),
                obj["line"].encode("utf-8", "surrogateescape"),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue
        if entry.custom_id and isinstance(entry.custom_id, str):
            held[entry.custom_id] = Held(
                entry.custom_id, entry.hash, entry.ok, entry.line.rstrip(b"\n") + b"\n"
            )
    return held


def write_spill(path: Path, entries: Iterable[Held]) -> int:
    """Replace ``path`` with ``entries`` (removed when there are none); returns how
    many were written."""
    rows = [
        json.dumps(
            {
                "custom_id": e.custom_id,
                "hash": e.hash,
                "ok": e.ok,
                "line": e.line.rstrip(b"\n").decode("utf-8", "surrogateescape"),
            },
            ensure_ascii=True,
        )
        for e in entries
    ]
    if not rows:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return 0
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="ascii") as f:
        f.write("\n".join(rows) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(rows)
