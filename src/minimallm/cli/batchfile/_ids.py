"""A compact set of custom_ids for duplicate detection over millions of lines.

A Python ``set`` of the ids themselves costs ~100 bytes per id (the string plus its
slot); this table keeps a 64-bit hash and the line number where the id was first
seen, 12 bytes per slot in two ``array``s, at most 70 % full: 25 MB for 10^6 ids
(linear probing then costs a few probes per new id, small next to parsing the line).
Equal hashes are only *suspected* duplicates; the caller confirms them against the
text of both lines (a 64-bit collision among 10^6 ids has odds of ~3·10^-8).
"""

from __future__ import annotations

from array import array

__all__ = ["IdTable"]

_MASK64 = (1 << 64) - 1
_MIN_LOG2 = 10
_MAX_LOAD = 0.7


class IdTable:
    """Open addressing with linear probing; hash 0 marks an empty slot. ``expected``
    sizes the table for that many ids at once (it grows, doubling, beyond)."""

    __slots__ = ("_count", "_hashes", "_lines", "_mask")

    def __init__(self, expected: int = 0) -> None:
        size = 1 << _MIN_LOG2
        while size * _MAX_LOAD < expected:
            size <<= 1
        self._alloc(size)
        self._count = 0

    def _alloc(self, size: int) -> None:
        self._hashes = array("Q", bytes(8 * size))
        self._lines = array("I", bytes(4 * size))
        self._mask = size - 1

    def __len__(self) -> int:
        return self._count

    def __repr__(self) -> str:
        return f"<IdTable ids={self._count} slots={self._mask + 1} bytes={self.nbytes}>"

    @property
    def nbytes(self) -> int:
        """Memory held by the two arrays (bytes)."""
        return (self._mask + 1) * 12

    def add(self, custom_id: str, line: int) -> int:
        """Record ``custom_id`` first seen on ``line``; return 0 if its hash is new, else
        the line of the earlier id with the same hash (a suspected duplicate)."""
        h = (hash(custom_id) & _MASK64) or 1
        hashes, mask = self._hashes, self._mask
        i = h & mask
        while True:
            slot = hashes[i]
            if slot == 0:
                break
            if slot == h:
                return self._lines[i]
            i = (i + 1) & mask
        hashes[i] = h
        self._lines[i] = line
        self._count += 1
        if self._count > _MAX_LOAD * (mask + 1):
            self._grow()
        return 0

    def _grow(self) -> None:
        old_hashes, old_lines = self._hashes, self._lines
        self._alloc(2 * len(old_hashes))
        hashes, lines, mask = self._hashes, self._lines, self._mask
        for h, line in zip(old_hashes, old_lines, strict=True):
            if h:
                i = h & mask
                while hashes[i]:
                    i = (i + 1) & mask
                hashes[i] = h
                lines[i] = line
