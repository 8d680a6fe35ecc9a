"""What came back: a batch's output and error files checked line by line, and results
written to OUTPUT/ERRORS in input order.

:func:`collect_file` reads one downloaded file a line at a time. Each line must be a
JSON object naming a ``custom_id`` that was sent in this batch and not answered yet;
anything else is a *problem* (named with the file and line number) and changes
nothing. A line with an HTTP ``response`` is classified exactly as a live answer is
(``outcome_from_reply``: the same success, the same ``HTTP 400: ...`` failure, the
same bytes in OUTPUT/ERRORS); the body is kept as the provider's own text. A line with
only an ``error`` is that request's failure (``ProviderError``), except the codes a
provider uses for requests it never ran (``batch_expired``, ``batch_cancelled``):
those stay unanswered, to be sent again. Successes are also stored in the prompt
cache (``CACHE_DIR``), under the same key a live run uses, so a later run answers
them from there.

:func:`write_ready` writes every result from the next request to write on, in order,
up to the first request still waiting.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minimallm._cache.store import CacheWriteError, PromptCache
from minimallm._http.reply import HttpReply
from minimallm._http.transport import outcome_from_reply
from minimallm._lazy_json import LazyJson
from minimallm._outcome.attempts import AttemptSuccess
from minimallm._outcome.redact import MESSAGE_CHARS, snippet
from minimallm._types import MinimaLlmFailure, MinimaLlmResponse, MinimaLlmResult
from minimallm.cli.batchfile import BatchWriter
from minimallm.cli.provider_batch._state import ResultRow, RunState

__all__ = ["NOT_RUN", "Collected", "collect_file", "result_of", "write_ready"]

NOT_RUN = frozenset({"batch_expired", "batch_cancelled"})
"""Error codes of requests the provider never ran: unanswered, not failed."""

_BODY = re.compile(r'"body"\s*:\s*')
_DECODER = json.JSONDecoder()
_ROWS = 1000  # results stored (and cached) at a time
MAX_PROBLEMS = 20
"""Problems kept word for word per batch; the rest are counted."""


@dataclass(slots=True)
class Collected:
    """What a batch's files gave: answers, failures, lines not run, problems."""

    ok: int = 0
    failed: int = 0
    not_run: int = 0
    problem_count: int = 0
    problems: list[str] = field(default_factory=list)
    cache_error: str | None = None

    def problem(self, text: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(text)


def _body_text(line: str, body: Any) -> str:
    """The body's own text inside ``line`` (the provider's bytes), else re-encoded."""
    for match in _BODY.finditer(line):
        try:
            value, end = _DECODER.raw_decode(line, match.end())
        except ValueError:
            continue
        if value == body:
            return line[match.end() : end]
    return json.dumps(body, ensure_ascii=False, separators=(",", ":"))


def collect_file(
    state: RunState,
    chunk: int,
    path: Path,
    label: str,
    secret: str | None,
    into: Collected,
    cache: PromptCache | None,
) -> None:
    """Check and store every line of ``path`` (call inside a transaction); successes go
    to ``cache`` too, a thousand at a time (if the cache refuses them, the answers are
    kept and ``into.cache_error`` says why)."""
    rows: list[ResultRow] = []
    cache_rows: list[tuple[str, str, str | None]] = []
    pending: set[int] = set()  # requests in ``rows`` (not yet visible to line_of)
    with path.open("rb") as f:
        for number, raw in enumerate(f, 1):
            where = f"{label} line {number}"
            if not raw.strip():
                continue
            try:
                text = raw.decode("utf-8").strip()
                obj = json.loads(text)
            except ValueError:
                into.problem(f"{where}: not a JSON line")
                continue
            custom_id = obj.get("custom_id") if isinstance(obj, dict) else None
            if not isinstance(custom_id, str):
                into.problem(f"{where}: no custom_id")
                continue
            found = state.line_of(custom_id)
            if found is None or found[2] != chunk:
                into.problem(f"{where}: custom_id {custom_id!r} was not sent in this batch")
                continue
            n, key, _, answered = found
            if answered or n in pending:
                into.problem(f"{where}: custom_id {custom_id!r} answered twice (first kept)")
                continue
            row = _classify(n, obj, text, secret, into)
            if row is None:
                continue
            if row[1] and key and row[2] is not None and cache is not None:
                cache_rows.append((key, row[2], row[3]))
            rows.append(row)
            pending.add(n)
            if len(rows) >= _ROWS:
                cache = _store(state, rows, cache, cache_rows, into)
                pending.clear()
    _store(state, rows, cache, cache_rows, into)


def _store(
    state: RunState,
    rows: list[ResultRow],
    cache: PromptCache | None,
    cache_rows: list[tuple[str, str, str | None]],
    into: Collected,
) -> PromptCache | None:
    state.add_results(rows)
    rows.clear()
    if cache is not None and cache_rows:
        try:
            cache.put_many(cache_rows)
        except CacheWriteError as exc:
            into.cache_error = str(exc)
            cache = None
    cache_rows.clear()
    return cache


def _classify(
    n: int, obj: dict[str, Any], text: str, secret: str | None, into: Collected
) -> ResultRow | None:
    response, error = obj.get("response"), obj.get("error")
    if isinstance(response, dict) and type(response.get("status_code")) is int:
        body = _body_text(text, response.get("body")).encode("utf-8")
        outcome = outcome_from_reply(HttpReply(response["status_code"], {}, body))
        if isinstance(outcome, AttemptSuccess):
            into.ok += 1
            raw = outcome.raw.text if isinstance(outcome.raw, LazyJson) else body.decode()
            return (n, 1, outcome.text, raw, None, None, None, None, None)
        into.failed += 1
        message = snippet(outcome.message, secret, MESSAGE_CHARS, marker="…")
        snip = None if outcome.body_snippet is None else snippet(outcome.body_snippet, secret)
        return (n, 0, None, None, outcome.error_type, message, 1, outcome.status, snip)
    if isinstance(error, dict):
        code = str(error.get("code") or "error")
        if code in NOT_RUN:
            into.not_run += 1
            return None
        into.failed += 1
        message = snippet(f"{code}: {error.get('message')}", secret, MESSAGE_CHARS, marker="…")
        return (n, 0, None, None, "ProviderError", message, 1, None, None)
    into.problem(f"custom_id {obj.get('custom_id')!r}: neither a response nor an error")
    return None


def result_of(custom_id: str, row: ResultRow) -> MinimaLlmResult:
    """The result a stored row stands for (as the live run would have made it)."""
    _, ok, text, raw, error_type, message, attempts, status, snip = row
    if ok:
        return MinimaLlmResponse(custom_id, text or "", None if raw is None else LazyJson(raw))
    return MinimaLlmFailure(custom_id, error_type or "ProviderError", message or "", attempts or 0,
                            status, snip)  # fmt: skip


def write_ready(state: RunState, writer: BatchWriter, position: int) -> int:
    """Write the results from request ``position`` on, in order, while they are there;
    flush; the new position."""
    for custom_id, row in state.results_from(position):
        writer.write(result_of(custom_id, row), custom_id=custom_id)
        position += 1
    writer.flush()
    return position
