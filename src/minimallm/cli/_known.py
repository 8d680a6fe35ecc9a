"""Results an earlier run kept (the spill file), put back in their place in input order.

:class:`KnownResults` sits between pass 2 and the writer: pass 2 asks :meth:`skip` for
each request still to do, in input order; a request whose result was kept (with the
same input line) is not sent, and takes its place in a queue that mirrors the order of
the stream. As each result of the stream arrives, the kept results queued before it are
written first. When the run stops, :meth:`leftover` is what the next run should get:
the kept results not written yet, and the results the stream finished but held back.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from minimallm._types import MinimaLlmFailure, MinimaLlmResponse, MinimaLlmResult
from minimallm.cli.batchfile import BatchWriter, Held, error_line, line_hash, success_line

__all__ = ["KnownResults"]


class KnownResults:
    """The kept results of ``held`` (by custom_id) and the order of the stream."""

    def __init__(self, held: Mapping[str, Held], secret: str | None = None) -> None:
        self._held = dict(held)
        self._secret = secret
        self._queue: deque[Held | None] = deque()  # None: the stream's next result
        self._hashes: dict[str, str] = {}  # custom_id -> line hash, for requests sent
        self.replayed = 0
        """Kept results written by this run."""

    def __repr__(self) -> str:
        return f"<KnownResults held={len(self._held)} queued={len(self._queue)}>"

    def skip(self, custom_id: str, raw: bytes) -> bool:
        """Pass 2's question: True if the result of this line is known (not sent)."""
        digest = line_hash(raw)
        entry = self._held.pop(custom_id, None)
        if entry is not None and entry.hash == digest:
            self._queue.append(entry)
            return True
        self._queue.append(None)  # a changed line (or none kept): sent again
        self._hashes[custom_id] = digest
        return False

    def write(self, writer: BatchWriter, result: MinimaLlmResult) -> None:
        """Write the stream's next result, after the kept results that come before it."""
        self._write_known(writer)
        if self._queue:
            self._queue.popleft()
        writer.write(result, digest=self._hashes.pop(result.request_id, ""))

    def write_rest(self, writer: BatchWriter) -> None:
        """The stream ended: write the kept results after its last one."""
        self._write_known(writer)

    def _write_known(self, writer: BatchWriter) -> None:
        queue = self._queue
        while queue and queue[0] is not None:
            entry = queue.popleft()
            assert entry is not None
            writer.write_line(entry.line, entry.ok, entry.hash)
            self.replayed += 1

    def leftover(self, held_back: Iterable[MinimaLlmResult], *, drop_failures: bool) -> list[Held]:
        """What the spill file should hold when the run stops: the kept results not
        written, and ``held_back`` (results finished but not written); failures are
        left out when ``drop_failures``."""
        entries = [e for e in self._queue if e is not None]
        entries += self._held.values()
        for result in held_back:
            cid = result.request_id
            digest = self._hashes.get(cid)
            if digest is None:
                continue
            if isinstance(result, MinimaLlmResponse):
                entries.append(Held(cid, digest, True, success_line(cid, result, self._secret)))
            elif isinstance(result, MinimaLlmFailure) and not drop_failures:
                entries.append(Held(cid, digest, False, error_line(cid, result)))
        if drop_failures:
            entries = [e for e in entries if e.ok]
        return entries
