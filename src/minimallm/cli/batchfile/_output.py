"""``run-batch`` output: the OpenAI Batch API's output lines, written in input order.

A success goes to OUTPUT::

    {"id":"batch_req_<32 hex>","custom_id":"q1","response":{"status_code":200,
     "request_id":"q1","body":<the server's JSON body, as received>},"error":null}

a failure to ERRORS (the same shape; ``response`` is null when no HTTP answer came,
e.g. a timeout or a refused connection)::

    {"id":"batch_req_<32 hex>","custom_id":"q2","response":{"status_code":404,
     "request_id":"q2","body":{"error":...}},"error":{"code":"HTTPError",
     "message":"HTTP 404: ...","attempts":1}}

so OUTPUT + ERRORS account for every request once. ``id`` is derived from the
custom_id (BLAKE2b), not random, and nothing carries a timestamp: a resumed run writes
the same bytes as an uninterrupted one would. ``request_id`` is the id minimallm used
for the request (its custom_id; failures and logs name it); ``response.body`` of a
failure is the server's error body when its first 300 characters decode as JSON, else
that text. Without an ERRORS file, failures are written inline in OUTPUT.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO, Self

from minimallm._outcome.redact import redact
from minimallm._types import MinimaLlmFailure, MinimaLlmResponse, MinimaLlmResult
from minimallm._types import raw_json_text as stored_raw_text
from minimallm.cli.batchfile._hashes import HASH_LINE, UNKNOWN, open_hashes
from minimallm.cli.batchfile._scan import BatchPlan

__all__ = [
    "BatchWriter",
    "batch_request_id",
    "default_errors_path",
    "error_line",
    "raw_json_text",
    "success_line",
]

HOLD_FAILURES = 1000
"""Failures :meth:`BatchWriter.hold_failures` keeps in memory at most."""

_quote = json.encoder.encode_basestring_ascii  # C-accelerated, never emits a raw newline


def batch_request_id(custom_id: str) -> str:
    """``batch_req_`` + 32 hex digits derived from ``custom_id`` (stable across runs)."""
    digest = hashlib.blake2b(custom_id.encode("utf-8", "surrogatepass"), digest_size=16)
    return "batch_req_" + digest.hexdigest()


def raw_json_text(response: MinimaLlmResponse) -> str:
    """The server's JSON body of ``response`` as one line of text.

    Uses the text as received when the body kept it (``LazyJson.text``), so a million
    answers are not decoded and re-encoded; a decoded mapping is encoded compactly. A
    pretty-printed body is re-encoded on one line. A response without a body (a cache
    entry that kept none) gets a minimal ``chat.completion`` body carrying its text.
    """
    text = stored_raw_text(response, ensure_ascii=False)  # the server's own text if undecoded
    if text is None:
        message = {"role": "assistant", "content": response.text}
        raw = {
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
        }
        text = json.dumps(raw, ensure_ascii=False, separators=(",", ":"))
    if "\n" in text or "\r" in text:  # JSON whitespace only: strings cannot hold them raw
        text = json.dumps(json.loads(text), ensure_ascii=False, separators=(",", ":"))
    return text


def success_line(custom_id: str, response: MinimaLlmResponse, secret: str | None = None) -> bytes:
    """One OUTPUT line (newline included); ``secret`` (the API key) is replaced by
    ``***`` wherever the server echoed it in the body."""
    cid = _quote(custom_id)
    body = redact(raw_json_text(response), secret)
    return (
        f'{{"id":"{batch_request_id(custom_id)}","custom_id":{cid},"response":'
        f'{{"status_code":200,"request_id":{cid},"body":{body}}},"error":null}}\n'
    ).encode("utf-8", "surrogatepass")


def _error_body(snippet: str | None) -> Any:
    if snippet is None:
        return None
    try:
        return json.loads(snippet)
    except ValueError:
        return snippet


def error_line(custom_id: str, failure: MinimaLlmFailure) -> bytes:
    """One ERRORS line (newline included)."""
    response = None
    if failure.status is not None and failure.error_type != "TimeoutError":
        response = {
            "status_code": failure.status,
            "request_id": custom_id,
            "body": _error_body(failure.body_snippet),
        }
    line = {
        "id": batch_request_id(custom_id),
        "custom_id": custom_id,
        "response": response,
        "error": {
            "code": failure.error_type,
            "message": failure.message,
            "attempts": failure.attempts,
        },
    }
    return (json.dumps(line, separators=(",", ":")) + "\n").encode()


def default_errors_path(output: str) -> str | None:
    """Where failures go when no ERRORS file is named: ``out.jsonl`` ->
    ``out.errors.jsonl``; None for ``-`` (stdout: failures inline)."""
    if output == "-":
        return None
    return output.removesuffix(".jsonl") + ".errors.jsonl"


class BatchWriter:
    """Writes results, given in input order, to OUTPUT and ERRORS.

    Lines are buffered and written by :meth:`flush` (called by the driver, e.g. once
    per second, and at once when ``flush_bytes`` are pending): the hashes of their
    input lines first (HASHES, see :mod:`._hashes`), then ERRORS, then OUTPUT, each
    pushed to the kernel before the next. So whatever a crash leaves, every failure
    before OUTPUT's last line is in ERRORS and every line written has its hash, which
    is what lets :func:`~._scan.scan_batch` resume. Data reach the kernel (they
    survive a killed process), not the disk (no fsync: a power cut can lose the last
    seconds).

    If a flush is interrupted (Ctrl-C, a full disk), nothing more is written, not even
    by :meth:`close`: writing the lines again could duplicate some, and writing OUTPUT
    after an ERRORS write that may not have landed would break the order resuming
    relies on. The next run redoes what is missing. ``ok`` and ``failed`` count the
    lines written (a failed flush's lines are not counted).
    """

    def __init__(
        self,
        output: BinaryIO,
        errors: BinaryIO | Path | None,
        *,
        flush_bytes: int = 1 << 18,
        hashes: BinaryIO | None = None,
        secret: str | None = None,
    ) -> None:
        self._out = output
        self._secret = secret
        self._err: BinaryIO | None = None if isinstance(errors, Path) else errors
        self._err_path = errors if isinstance(errors, Path) else None
        self._inline = errors is None
        self._hashes = hashes
        self._flush_bytes = flush_bytes
        self._out_buf: list[bytes] = []
        self._err_buf: list[bytes] = []
        self._hash_buf: list[bytes] = []
        self._buf_ok = 0
        self._buf_failed = 0
        self._pending = 0
        self._closed = False
        self._broken = False  # a flush was interrupted: write nothing more
        self._hold = 0  # see hold_failures
        self._may_drop = False  # hold_failures was called
        self.ok = 0
        """Successes written by this writer."""
        self.failed = 0
        """Failures written by this writer."""

    def __repr__(self) -> str:
        return (
            f"<BatchWriter ok={self.ok} failed={self.failed} pending={self._pending} "
            f"closed={self._closed}>"
        )

    @classmethod
    def open(
        cls,
        plan: BatchPlan,
        output: str,
        errors: str | None,
        *,
        flush_bytes: int = 1 << 18,
        hashes: Path | None = None,
        secret: str | None = None,
    ) -> Self:
        """Open OUTPUT (``-``: stdout) and ERRORS (None: failures inline) to continue
        ``plan``: each file is cut to the bytes the plan keeps (a torn last line, stale
        ERRORS lines past the done prefix) and appended to. ERRORS is created at the
        first failure. ``hashes``: the HASHES file, cut to the plan's done requests;
        ``secret``: the API key, never written (see :func:`success_line`)."""
        if output == "-":
            err_file = None if errors is None else _open_at(Path(errors), 0)
            return cls(sys.stdout.buffer, err_file, secret=secret)
        out = _open_at(Path(output), plan.output_keep)
        err: BinaryIO | Path | None = None
        if errors is not None:
            path = Path(errors)
            err = _open_at(path, plan.errors_keep) if path.exists() else path
        sums = None if hashes is None else open_hashes(hashes, plan.done)
        return cls(out, err, flush_bytes=flush_bytes, hashes=sums, secret=secret)

    def write(
        self, result: MinimaLlmResult, *, custom_id: str | None = None, digest: str = ""
    ) -> None:
        """Buffer the line for the next request in input order. ``custom_id`` defaults
        to ``result.request_id`` (run-batch requests use the custom_id as their id);
        ``digest`` is the hash of its input line (for HASHES)."""
        if isinstance(result, MinimaLlmResponse):
            line = success_line(custom_id or result.request_id, result, self._secret)
            self.write_line(line, True, digest)
        elif isinstance(result, MinimaLlmFailure):
            self.write_line(error_line(custom_id or result.request_id, result), False, digest)
        else:
            raise TypeError(f"expected a MinimaLlmResponse or MinimaLlmFailure, got {result!r}")

    def write_line(self, line: bytes, ok: bool, digest: str = "") -> None:
        """Buffer a line already made (e.g. an answer kept by an earlier run, see
        :mod:`._spill`): to OUTPUT when ``ok``, else to ERRORS."""
        if self._closed:
            raise ValueError("BatchWriter is closed")
        if ok:
            self._out_buf.append(line)
            self._buf_ok += 1
        else:
            (self._out_buf if self._inline else self._err_buf).append(line)
            self._buf_failed += 1
        if self._hashes is not None:
            entry = digest if len(digest) == HASH_LINE - 1 else UNKNOWN
            self._hash_buf.append(entry.encode() + b"\n")
        self._pending += len(line)
        if self._pending >= self._flush_bytes:
            self.flush()

    def hold_failures(self, limit: int = HOLD_FAILURES) -> None:
        """Keep failures in memory until this writer gets its first answer (at most
        ``limit`` of them): a run that stops because every request fails alike (a
        wrong key, URL or model) can then :meth:`drop_held` them instead of recording
        them as failures of their lines."""
        self._hold = limit
        self._may_drop = True

    def drop_held(self) -> int:
        """Forget the failures held back (none were written: the writer has had no
        answer yet); returns how many. Nothing more is written afterwards."""
        if not self._may_drop or self.ok or self._buf_ok or self.failed or self._broken:
            return 0
        dropped = self._buf_failed
        self._out_buf.clear()
        self._err_buf.clear()
        self._hash_buf.clear()
        self._pending = self._buf_failed = 0
        self._broken = True  # close() must not write anything now
        return dropped

    def flush(self) -> None:
        """Write every buffered line: HASHES, ERRORS, then OUTPUT (unless failures
        are held, see :meth:`hold_failures`)."""
        if self._hold and not self._buf_ok and not self.ok and self._buf_failed < self._hold:
            return
        self._hold = 0  # held long enough, or an answer came: write as usual from now on
        if self._broken:
            raise ValueError(
                "BatchWriter: an earlier flush was interrupted; nothing more is written"
            )
        try:
            self._flush()
        except BaseException:
            self._broken = True
            raise

    def _flush(self) -> None:
        for f, buf in ((self._hashes, self._hash_buf), (None, self._err_buf)):
            if not buf:
                continue
            if f is None:
                if self._err is None:
                    assert self._err_path is not None
                    self._err = self._err_path.open("ab")
                f = self._err
            f.write(b"".join(buf))
            f.flush()
            buf.clear()
        if self._out_buf:
            self._out.write(b"".join(self._out_buf))
            self._out.flush()
            self._out_buf.clear()
        self.ok += self._buf_ok
        self.failed += self._buf_failed
        self._buf_ok = self._buf_failed = self._pending = 0

    def close(self) -> None:
        """Flush and close the files (stdout is flushed, not closed). Idempotent."""
        if self._closed:
            return
        try:
            if not self._broken:
                self._hold = 0
                self.flush()
        finally:
            self._closed = True
            for f in (self._err, self._hashes):
                if f is not None:
                    f.close()
            if self._out is not sys.stdout.buffer:
                self._out.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _open_at(path: Path, keep: int) -> BinaryIO:
    """``path`` opened for appending after its first ``keep`` bytes (created if
    missing); the rest is cut off."""
    try:
        f = path.open("r+b")
    except FileNotFoundError:
        f = path.open("w+b")
    if f.seek(0, 2) < keep:
        f.close()
        raise ValueError(f"{path} is shorter than the {keep} bytes to keep: it changed")
    f.truncate(keep)
    f.seek(keep)
    return f
