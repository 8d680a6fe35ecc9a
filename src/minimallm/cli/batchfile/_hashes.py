"""HASHES (``OUTPUT.hashes``): the hash of each input line whose result was written.

OUTPUT and ERRORS follow the Batch API's format, which has no room for the request a
result answers, and resume matches lines by custom_id. So an input line edited after
its answer was written would keep the old answer. The writer therefore records, for
each request written (to OUTPUT or ERRORS, in input order), the BLAKE2b hash of its
input line: one fixed-width line of :data:`HASH_LINE` bytes each, written before the
results themselves, so the file never has fewer entries than the results on disk and
can be cut to exactly the done requests. A resume compares the input's lines with it
and refuses a changed one. An entry of dashes means "not known" (files written before
HASHES existed): such lines are not checked.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["HASH_LINE", "UNKNOWN", "hashes_path", "line_hash", "open_hashes", "read_hashes"]

HASH_LINE = 33
"""Bytes per entry: 32 hex digits and a newline."""
UNKNOWN = "-" * 32
"""The entry of a request whose input line was not recorded."""


def hashes_path(output: str) -> Path:
    """The HASHES file of ``output``: ``out.jsonl`` -> ``out.jsonl.hashes``."""
    return Path(output + ".hashes")


def line_hash(raw: bytes) -> str:
    """The hash of one input line (surrounding whitespace ignored), 32 hex digits."""
    return hashlib.blake2b(raw.strip(), digest_size=16).hexdigest()


def read_hashes(path: Path | None) -> Iterator[str]:
    """The entries of ``path`` in order (nothing if there is none; a torn last entry
    is left out)."""
    if path is None:
        return
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        while len(entry := f.read(HASH_LINE)) == HASH_LINE:
            yield entry[:32].decode("ascii", "replace")


def open_hashes(path: Path, keep: int) -> BinaryIO:
    """``path`` opened for appending after its first ``keep`` entries (padded with
    :data:`UNKNOWN` entries when it has fewer; created if missing)."""
    try:
        f = path.open("r+b")
    except FileNotFoundError:
        f = path.open("w+b")
    have = f.seek(0, 2) // HASH_LINE
    f.truncate(min(have, keep) * HASH_LINE)
    f.seek(0, 2)
    if have < keep:
        f.write((UNKNOWN.encode() + b"\n") * (keep - have))
    return f
