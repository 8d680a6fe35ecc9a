"""The values the prompt cache's store takes and gives: a hit (:class:`CachedAnswer`),
a row to write (:class:`StoreRow`), and a row's SQL parameters."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from minimallm._cache.sqlite import Params

__all__ = ["CachedAnswer", "StoreRow", "row_params"]


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    """One cache hit: the answer's text and the server's JSON body as text (or None);
    ``source`` says where it was found when not in the cache itself under its own key
    (``"lookup:<dir>"``, ``"synonym:<model>"`` or both, as minima-llm names them)."""

    text: str
    raw_json: str | None
    source: str | None = None


class StoreRow(NamedTuple):
    """One answer to write. ``model``/``canonical`` fill minima-llm's columns where the
    table has them; ``created_at`` None means now (a copy from a lookup cache keeps the
    original's, so "the newest row wins" still sees it as that generation)."""

    key: str
    text: str
    raw_json: str | None
    model: str | None = None
    canonical: str | None = None
    created_at: float | None = None


def row_params(row: tuple[str, str, str | None] | StoreRow, now: float, audit: bool) -> Params:
    if isinstance(row, StoreRow):
        at = now if row.created_at is None else row.created_at
        if audit:
            return (row.key, row.text, row.raw_json, at, row.model, row.canonical)
        return (row.key, row.text, row.raw_json, at)
    key, text, raw = row
    return (key, text, raw, now, None, None) if audit else (key, text, raw, now)
