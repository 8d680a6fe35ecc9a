"""The mock's OpenAI Batch API: ``/v1/files`` and ``/v1/batches``, on a time scale.

Endpoints (also without the ``/v1`` prefix):

* ``POST /v1/files`` (multipart/form-data: ``purpose``, ``file``), ``GET /v1/files``
  (``purpose``, ``limit``, ``after``), ``GET /v1/files/{id}``,
  ``GET /v1/files/{id}/content``;
* ``POST /v1/batches`` (``input_file_id``, ``endpoint``, ``completion_window``,
  ``metadata``), ``GET /v1/batches`` (newest first; ``limit``, ``after``),
  ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``;
* ``GET /mock/batches``: the counters (files uploaded, lines uploaded, batches
  created, downloads) as JSON, for tests.

A batch takes ``batch_duration_s`` seconds (wall clock): ``validating`` for the first
10 %, ``in_progress`` for 80 % (its lines finish evenly over that time), then
``finalizing``, then ``completed``. Each line is answered like a live chat request:
the same responder and bodies (``--deterministic`` gives the same bytes), and a
``#mock:fault=`` directive gives that line its first fault (a status becomes an error
line with the same error body a live request gets). ``batch_outcomes`` makes the Nth
batch created end otherwise: ``"1=expired@0.5"`` expires once half its lines are done
(the rest are listed in the error file with code ``batch_expired``), ``"2=failed"``
fails validation, ``"1=cancelled@0.5"`` is cancelled half-way (the rest are left out
of both files). Output lines are written in reverse input order, as a provider may.
Everything is held in memory: this is a test double, not a store.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from minimallm.mock.bodies import error_body
from minimallm.mock.config import last_message_text, parse_batch_outcome
from minimallm.mock.faults import DirectiveError, parse_directives

__all__ = ["BATCH_STATES", "MockBatchApi", "parse_batch_outcome"]

BATCH_STATES = ("validating", "in_progress", "finalizing", "completed")
_FINAL = frozenset({"completed", "expired", "cancelled", "failed"})
_WINDOWS = {"24h": 86_400.0}

Answer = tuple[int, bytes, str]
"""(status, body, content type)."""


@dataclass(slots=True)
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }


@dataclass(slots=True)
class _Batch:
    id: str
    input_file_id: str
    endpoint: str
    window: str
    metadata: Any
    created: float  # time.time()
    lines: list[tuple[str, dict[str, Any], str]]  # (custom_id, body, fault kind)
    outcome: tuple[str, float] | None
    problem: str | None = None  # validation failure
    cancel_at: float | None = None
    done_at_cancel: int | None = None
    files: tuple[str | None, str | None] | None = None  # (output, error) once final
    ok_prefix: list[int] = field(default_factory=list)  # successes among the first k lines


class MockBatchApi:
    """Files and batches of one mock server (trio thread only)."""

    def __init__(
        self,
        *,
        duration_s: float,
        outcomes: Mapping[int, tuple[str, float]],
        answer: Callable[[dict[str, Any], str], bytes | None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._duration = duration_s
        self._outcomes = dict(outcomes)
        self._answer = answer  # (body, kind) -> a 200 body, None if the responder failed
        self._clock = clock
        self._files: dict[str, _File] = {}
        self._batches: dict[str, _Batch] = {}
        self.counters = {"uploads": 0, "upload_lines": 0, "batches_created": 0, "downloads": 0}

    @staticmethod
    def handles(path: str) -> bool:
        """True for the paths this API serves."""
        p = path.removeprefix("/v1")
        return p in ("/files", "/batches") or p.startswith(("/files/", "/batches/"))

    def _id(self, prefix: str, n: int) -> str:
        return f"{prefix}-mock{n:06d}"

    # -- dispatch ---------------------------------------------------------------------

    def handle(self, method: str, target: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """Answer one request (never raises for anything the client sends)."""
        path, _, query_text = target.partition("?")
        query = {k: v[-1] for k, v in parse_qs(query_text).items()}
        parts = path.removeprefix("/v1").strip("/").split("/")
        try:
            if parts[0] == "files":
                return self._files_route(method, parts[1:], query, headers, body)
            return self._batches_route(method, parts[1:], query, body)
        except (ValueError, KeyError, TypeError) as exc:
            return _error(400, f"mock batch API: {exc}")

    def _files_route(
        self, method: str, rest: list[str], query: dict[str, str], headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:  # fmt: skip
        if not rest and method == "POST":
            return self._upload(headers, body)
        if not rest and method == "GET":
            files = [
                f for f in self._files.values() if query.get("purpose", f.purpose) == f.purpose
            ]
            return _listing([f.public() for f in reversed(files)], query, 10_000)
        if not rest:
            return _error(405, f"{method} not allowed on /v1/files")
        found = self._files.get(rest[0])
        if found is None:
            return _error(404, f"No such File object: {rest[0]}")
        if len(rest) == 1 and method == "GET":
            return _json(found.public())
        if rest[1:] == ["content"] and method == "GET":
            self.counters["downloads"] += 1
            return 200, found.data, "application/octet-stream"
        return _error(404, f"no route for {method} /v1/files/{'/'.join(rest)}")

    def _batches_route(
        self, method: str, rest: list[str], query: dict[str, str], body: bytes
    ) -> Answer:
        if not rest and method == "POST":
            return self._create(json.loads(body or b"null"))
        if not rest and method == "GET":
            batches = [self._public(b) for b in reversed(self._batches.values())]
            return _listing(batches, query, 100, default=20)
        batch = self._batches.get(rest[0]) if rest else None
        if batch is None:
            return _error(404, f"No such Batch object: {rest[0] if rest else ''}")
        if len(rest) == 1 and method == "GET":
            return _json(self._public(batch))
        if rest[1:] == ["cancel"] and method == "POST":
            status, done = self._progress(batch, self._clock())
            if status in _FINAL:
                return _error(400, f"Cannot cancel a batch with status '{status}'.")
            if batch.cancel_at is None:
                batch.cancel_at, batch.done_at_cancel = self._clock(), done
            return _json(self._public(batch))
        return _error(404, f"no route for {method} /v1/batches/{'/'.join(rest)}")

    # -- files ------------------------------------------------------------------------

    def _upload(self, headers: Mapping[str, str], body: bytes) -> Answer:
        ctype = headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data") or "boundary=" not in ctype:
            return _error(400, "upload must be multipart/form-data with a boundary")
        boundary = ctype.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in body.split(b"--" + boundary.encode())[1:]:
            if part.startswith(b"--"):
                break
            head, sep, content = part.partition(b"\r\n\r\n")
            if not sep:
                return _error(400, "malformed multipart part")
            disposition = head.decode("latin-1")
            name = _param(disposition, "name")
            if name:
                fields[name] = (_param(disposition, "filename"), content.removesuffix(b"\r\n"))
        if "file" not in fields or "purpose" not in fields:
            return _error(400, "upload needs the fields 'purpose' and 'file'")
        filename, data = fields["file"]
        file = _File(
            self._id("file", len(self._files) + 1),
            filename or "upload.jsonl",
            fields["purpose"][1].decode(),
            data,
            int(self._clock()),
        )
        self._files[file.id] = file
        self.counters["uploads"] += 1
        self.counters["upload_lines"] += data.count(b"\n")
        return _json(file.public())

    # -- batches ----------------------------------------------------------------------

    def _create(self, args: Any) -> Answer:
        if not isinstance(args, dict):
            return _error(400, "the body must be a JSON object")
        file = self._files.get(str(args.get("input_file_id")))
        if file is None:
            return _error(400, f"input_file_id {args.get('input_file_id')!r} is not a file")
        window = args.get("completion_window", "24h")
        if window not in _WINDOWS:
            return _error(400, f"completion_window must be one of {sorted(_WINDOWS)}")
        endpoint = args.get("endpoint")
        number = len(self._batches) + 1
        outcome = self._outcomes.get(number)
        lines, problem = _read_lines(file.data, endpoint)
        if outcome is not None and outcome[0] == "failed":
            problem = problem or "mock: this batch fails on demand (--batch-outcome)"
        batch = _Batch(
            self._id("batch", number), file.id, str(endpoint), window, args.get("metadata"),
            self._clock(), lines, outcome, problem,
        )  # fmt: skip
        prefix = [0]
        for _, _, kind in lines:
            prefix.append(prefix[-1] + (kind in ("ok", "null", "nochoices")))
        batch.ok_prefix = prefix
        self._batches[batch.id] = batch
        self.counters["batches_created"] += 1
        return _json(self._public(batch))

    def _progress(self, b: _Batch, now: float) -> tuple[str, int]:
        """(status, lines done) at ``now``."""
        d = self._duration
        elapsed = now - b.created
        n = len(b.lines)
        if b.problem is not None:
            return ("validating", 0) if elapsed < 0.1 * d else ("failed", 0)
        if b.cancel_at is not None:
            done = b.done_at_cancel or 0
            return ("cancelling", done) if now - b.cancel_at < 0.05 * d else ("cancelled", done)
        if elapsed < 0.1 * d:
            return "validating", 0
        done = min(n, int(n * (elapsed - 0.1 * d) / (0.8 * d))) if d > 0 else n
        if b.outcome is not None:
            kind, fraction = b.outcome
            stop = int(n * fraction)
            if done >= stop:
                return kind, stop
        if done < n:
            return "in_progress", done
        return ("finalizing", n) if elapsed < d else ("completed", n)

    def _public(self, b: _Batch) -> dict[str, Any]:
        now = self._clock()
        status, done = self._progress(b, now)
        ok = b.ok_prefix[done] if b.ok_prefix else 0
        out: dict[str, Any] = {
            "id": b.id,
            "object": "batch",
            "endpoint": b.endpoint,
            "errors": None,
            "input_file_id": b.input_file_id,
            "completion_window": b.window,
            "status": status,
            "output_file_id": None,
            "error_file_id": None,
            "created_at": int(b.created),
            "expires_at": int(b.created + _WINDOWS[b.window]),
            "request_counts": {"total": len(b.lines), "completed": ok, "failed": done - ok},
            "metadata": b.metadata,
        }
        if status == "failed":
            out["errors"] = {"object": "list", "data": [{"code": "invalid_request",
                             "message": b.problem, "line": None, "param": None}]}  # fmt: skip
            out["request_counts"]["total"] = 0
        if status in _FINAL and status != "failed":
            if b.files is None:
                b.files = self._write_results(b, status, done)
            out["output_file_id"], out["error_file_id"] = b.files
        return out

    def _write_results(self, b: _Batch, status: str, done: int) -> tuple[str | None, str | None]:
        ok_lines: list[bytes] = []
        err_lines: list[bytes] = []
        for i in reversed(range(len(b.lines))):
            custom_id, body, kind = b.lines[i]
            cid = json.dumps(custom_id)
            line_id = "batch_req_" + hashlib.blake2b(custom_id.encode(), digest_size=12).hexdigest()
            head = f'{{"id":"{line_id}","custom_id":{cid},'.encode()
            if i >= done:
                if status == "expired":
                    err = {"code": "batch_expired", "message": "This request could not be "
                           "executed before the completion window expired."}  # fmt: skip
                    err_lines.append(head + b'"response":null,"error":' + _dumps(err) + b"}\n")
                continue
            request_id = f'"req_{line_id[10:]}"'.encode()
            answer = None if kind.isdigit() else self._answer(body, kind)
            if answer is not None:
                ok_lines.append(
                    head + b'"response":{"status_code":200,"request_id":' + request_id
                    + b',"body":' + answer + b'},"error":null}\n'
                )  # fmt: skip
            elif kind.isdigit():
                message = f"mock fault: injected HTTP {kind}"
                err_lines.append(
                    head + b'"response":{"status_code":' + kind.encode() + b',"request_id":'
                    + request_id + b',"body":' + error_body(int(kind), message)
                    + b'},"error":null}\n'
                )  # fmt: skip
            else:
                err = {"code": "server_error", "message": f"mock fault: {kind}"}
                err_lines.append(head + b'"response":null,"error":' + _dumps(err) + b"}\n")
        ids: list[str | None] = []
        for name, data in (("output", ok_lines), ("errors", err_lines)):
            if not data:
                ids.append(None)
                continue
            file = _File(
                self._id("file", len(self._files) + 1),
                f"{b.id}_{name}.jsonl",
                "batch_output",
                b"".join(data),
                int(self._clock()),
            )
            self._files[file.id] = file
            ids.append(file.id)
        return ids[0], ids[1]


def _read_lines(
    data: bytes, endpoint: object
) -> tuple[list[tuple[str, dict[str, Any], str]], str | None]:
    lines: list[tuple[str, dict[str, Any], str]] = []
    seen: set[str] = set()
    for n, raw in enumerate(data.splitlines(), 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
            custom_id, body = obj["custom_id"], obj["body"]
            if obj.get("method") != "POST" or obj.get("url") != endpoint:
                return lines, f"line {n}: method must be POST and url the batch's endpoint"
            if not isinstance(custom_id, str) or custom_id in seen or not isinstance(body, dict):
                return lines, f"line {n}: custom_id missing or repeated, or body not an object"
            seen.add(custom_id)
            faults = parse_directives(last_message_text(body)).faults
        except (ValueError, KeyError, TypeError, DirectiveError) as exc:
            return lines, f"line {n}: {exc}"
        lines.append((custom_id, body, faults[0] if faults else "ok"))
    return lines, None


def _param(disposition: str, name: str) -> str | None:
    for item in disposition.replace("\r\n", ";").split(";"):
        key, eq, value = item.strip().partition("=")
        if eq and key.lower() == name:
            return value.strip().strip('"')
    return None


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _json(obj: Any) -> Answer:
    return 200, _dumps(obj), "application/json"


def _error(status: int, message: str) -> Answer:
    return status, error_body(status, message), "application/json"


def _listing(
    items: list[dict[str, Any]], query: dict[str, str], most: int, default: int | None = None
) -> Answer:
    limit = max(1, min(most, int(query.get("limit", default or most))))
    after = query.get("after")
    if after is not None:
        ids = [item["id"] for item in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    page = items[:limit]
    return _json(
        {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(items) > limit,
        }
    )
