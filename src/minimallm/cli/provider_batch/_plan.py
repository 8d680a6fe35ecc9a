"""What to send: the requests not in the cache, cut into files within the provider's limits.

:func:`plan_run` reads the requests still to do once: a cache hit (``CACHE_DIR``) and a
request that cannot be encoded become results at once (written to OUTPUT/ERRORS as
soon as input order allows, never uploaded); the rest are written, in input order, as
Batch API lines into chunk files of at most ``max_lines`` lines and ``max_bytes``
bytes beside OUTPUT. :func:`plan_resend` does the same for requests an expired,
cancelled or failed batch left unanswered. Both commit their rows in one transaction
after the files are written, so a run killed half-way plans again from scratch
(nothing was uploaded before that commit).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from minimallm._cache.keys import cache_key
from minimallm._cache.store import PromptCache
from minimallm._errors import InvalidRequestError
from minimallm._requests import encode_request
from minimallm._types import MinimaLlmFailure, MinimaLlmRequest
from minimallm.cli.batchfile import BatchFileError
from minimallm.cli.provider_batch._flags import MAX_BYTES, MAX_LINES
from minimallm.cli.provider_batch._state import ResultRow, RunState

__all__ = ["Limits", "chunk_file", "plan_resend", "plan_run"]

_quote = json.encoder.encode_basestring_ascii
_LOOKUP = 500  # requests per bulk cache read


@dataclass(frozen=True, slots=True)
class Limits:
    """The provider's limits per uploaded file (lines, bytes)."""

    max_lines: int = MAX_LINES
    max_bytes: int = MAX_BYTES


def chunk_file(output: str, chunk: int) -> Path:
    """Where chunk ``chunk``'s lines wait for their upload."""
    return Path(f"{output}.provider-batch.{chunk}.jsonl")


def _key(model: str, req: MinimaLlmRequest) -> str:
    try:
        return cache_key(model, req)
    except (TypeError, ValueError, AttributeError, RecursionError):
        return ""


class _ChunkWriter:
    """Writes Batch API lines into chunk files, starting a new one at the limits."""

    def __init__(self, state: RunState, output: str, run_id: str, limits: Limits) -> None:
        self._state, self._output, self._run_id, self._limits = state, output, run_id, limits
        self._next = state.next_chunk_id()
        self._file: BinaryIO | None = None
        self._lines = self._bytes = 0
        self.chunks: list[tuple[int, str, int, int]] = []  # (id, name, lines, bytes)

    def add(self, line: bytes) -> int:
        """Write one line; the chunk it went into."""
        if self._file is not None and (
            self._lines >= self._limits.max_lines
            or self._bytes + len(line) > self._limits.max_bytes
        ):
            self._finish()
        if self._file is None:
            self._file = chunk_file(self._output, self._next).open("wb")
        self._file.write(line)
        self._lines += 1
        self._bytes += len(line)
        return self._next

    def _finish(self) -> None:
        assert self._file is not None
        self._file.close()
        self._file = None
        name = f"minimallm-{self._run_id}-{self._next}.jsonl"
        self.chunks.append((self._next, name, self._lines, self._bytes))
        self._next += 1
        self._lines = self._bytes = 0

    def close(self) -> None:
        """Finish the last chunk."""
        if self._file is not None:
            self._finish()


def _batch_line(custom_id: str, body: bytes) -> bytes:
    return (
        b'{"custom_id":' + _quote(custom_id).encode() + b',"method":"POST",'
        b'"url":"/v1/chat/completions","body":' + body + b"}\n"
    )


def plan_run(
    state: RunState,
    requests: Iterator[MinimaLlmRequest],
    *,
    first: int,
    model: str,
    output: str,
    limits: Limits,
    cache: PromptCache | None,
) -> None:
    """Plan the requests ``first, first+1, ...`` (``requests``) and commit the plan."""
    run_id = state.meta()["run_id"]
    writer = _ChunkWriter(state, output, run_id, limits)
    lines: list[tuple[int, str, str, int | None]] = []
    results: list[ResultRow] = []
    n = first
    with state.transaction():
        while True:
            batch = [r for _, r in zip(range(_LOOKUP), requests, strict=False)]
            if not batch:
                break
            keys = [_key(model, r) for r in batch]
            hits = cache.get_many([k for k in keys if k]) if cache is not None else {}
            for req, key in zip(batch, keys, strict=True):
                hit = hits.get(key) if key else None
                if hit is not None:
                    lines.append((n, req.request_id, key, None))
                    results.append((n, 1, hit.text, hit.raw_json, None, None, None, None, None))
                else:
                    try:
                        body = encode_request(model, req, compress=False)
                    except InvalidRequestError as exc:  # what a live run makes of it
                        f = MinimaLlmFailure(req.request_id, "InvalidRequest", str(exc), 0)
                        lines.append((n, req.request_id, key, None))
                        results.append(
                            (n, 0, None, None, f.error_type, f.message, f.attempts, None, None)
                        )
                    else:
                        chunk = writer.add(_batch_line(req.request_id, body))
                        lines.append((n, req.request_id, key, chunk))
                n += 1
            state.add_lines(lines)
            state.add_results(results)
            lines.clear()
            results.clear()
        writer.close()
        for chunk_id, name, count, size in writer.chunks:
            state.new_chunk(chunk_id, name, count, size)
        state.set_meta("planned", "1")


def plan_resend(
    state: RunState,
    requests: Iterator[MinimaLlmRequest],
    *,
    first: int,
    model: str,
    output: str,
    limits: Limits,
    input_name: str,
) -> int:
    """New chunks for the requests from ``first`` on that a finished batch left
    unanswered (``requests``: the input's requests from ``first`` on); how many."""
    run_id = state.meta()["run_id"]
    writer = _ChunkWriter(state, output, run_id, limits)
    moved: list[tuple[int, str, str, int | None]] = []
    with state.transaction():
        todo = state.unanswered(first)
        wanted = next(todo, None)
        for n, req in enumerate(requests, first):
            if wanted is None:
                break
            if n < wanted[0]:
                continue
            if req.request_id != wanted[1]:
                raise BatchFileError(
                    f"{input_name} (changed since the provider batch began)",
                    [(n + 1, f"request {n + 1} is {req.request_id!r}, was {wanted[1]!r}")],
                    1,
                )
            body = encode_request(model, req, compress=False)
            chunk = writer.add(_batch_line(req.request_id, body))
            moved.append((n, req.request_id, _key(model, req), chunk))
            wanted = next(todo, None)
        writer.close()
        state.add_lines(moved)
        for chunk_id, name, count, size in writer.chunks:
            state.new_chunk(chunk_id, name, count, size)
    return len(moved)
