"""Single flight: one HTTP call for a cache key that identical requests share.

Apart from :mod:`.stage` so that the request door can import it without the prompt
cache's store (SQLite), which is imported only when a cache is used."""

from __future__ import annotations

import trio

from minimallm._types import MinimaLlmResult

__all__ = ["Flight"]


class Flight:
    """An HTTP call for one cache key that others may join: they wait for ``done`` and
    read ``result`` (None: the leader was cancelled; look again)."""

    __slots__ = ("done", "result")

    def __init__(self) -> None:
        self.done = trio.Event()
        self.result: MinimaLlmResult | None = None
