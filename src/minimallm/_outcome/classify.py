"""The one classification table: every way an attempt can fail, decided in one row.

A row (:class:`Row`) says, together: the ``error_type`` a failure reports, whether
asking again can help (``retryable``), whether the answer says the *server* is
overloaded (``overload``: it feeds the shared cooldown), and how flow control reads
the attempt (``kind``, an :data:`~minimallm._outcome.attempts.AttemptKind`). Nothing
downstream re-derives any of them from another (a proxy's permanent 403/407 is an
answer that failed, not an outage, because its row says so).

Two tables, each keyed, never scanned in order:

- :data:`EXCEPTION_ROWS`: one row per exception class of the HTTP layer
  (``_http.errors``) and ``OSError``. An exception takes the row of the most specific
  class it is an instance of (its type's MRO, first class with a row), so the order
  rows are written in does not matter; a test checks every ``_http.errors`` class has
  its own row.
- Answers: a non-2xx status takes :func:`status_row` (the policy tables of
  ``_policy.retry``), unless its error body names a class that retrying cannot fix
  (:func:`named_answer_row`: quota, context length, content filter); a 2xx body that
  is not a usable completion takes one of the named answer rows below
  (``_outcome.reply``).
"""

from __future__ import annotations

import json
import re
from typing import Any, NamedTuple

from minimallm._http import errors as http_errors
from minimallm._outcome.attempts import AttemptError, AttemptKind
from minimallm._policy.ratelimit import RateLimitInfo
from minimallm._policy.retry import is_overload_status, is_retryable_status

__all__ = [
    "CONTENT_FILTERED",
    "CONTEXT_LENGTH_EXCEEDED",
    "EMPTY_CONTENT",
    "EXCEPTION_ROWS",
    "MALFORMED_RESPONSE",
    "QUOTA_EXCEEDED",
    "TIMEOUT",
    "TRANSPORT_EXCEPTIONS",
    "TRUNCATED",
    "Row",
    "exception_row",
    "named_answer_row",
    "outcome_from_exception",
    "status_row",
    "timeout_outcome",
]


class Row(NamedTuple):
    """One class of failed attempt: what it is called, whether it is retried, whether
    it signals overload, and how flow control reads it."""

    error_type: str
    retryable: bool
    overload: bool
    kind: AttemptKind

    def error(
        self,
        message: str,
        status: int | None = None,
        body_snippet: str | None = None,
        retry_after_s: float | None = None,
        rate: RateLimitInfo | None = None,
        raw: Any = None,
    ) -> AttemptError:
        """The :class:`AttemptError` of this row."""
        return AttemptError(
            self.error_type,
            message,
            self.retryable,
            self.overload,
            self.kind,
            status,
            body_snippet,
            retry_after_s,
            rate,
            raw=raw,
        )


# -- exceptions -----------------------------------------------------------------------
# Not retried: what asking again cannot change (a certificate we do not trust, an
# encoding we cannot decode, a body over the cap, a proxy that said no, a request we
# cannot send). ``unreachable``: no server reached (outage evidence); ``failed``:
# something answered, for good; ``broken``: neither (the connection broke, or nothing
# was sent).

_E = http_errors
EXCEPTION_ROWS: dict[type[BaseException], Row] = {
    _E.HttpError: Row("HttpError", True, False, "broken"),
    _E.TransportError: Row("ConnectionError", True, False, "broken"),
    _E.ConnectError: Row("ConnectError", True, False, "unreachable"),
    _E.ProxyError: Row("ProxyError", True, False, "unreachable"),
    _E.ProxyRejectedError: Row("ProxyError", False, False, "failed"),
    _E.ReadError: Row("ConnectionError", True, False, "broken"),
    _E.WriteError: Row("ConnectionError", True, False, "broken"),
    _E.ProtocolError: Row("RemoteProtocolError", True, False, "broken"),
    _E.RemoteProtocolError: Row("RemoteProtocolError", True, False, "broken"),
    _E.DecodingError: Row("DecodingError", True, False, "broken"),
    _E.LocalProtocolError: Row("LocalProtocolError", False, False, "broken"),
    _E.UnsupportedProtocol: Row("UnsupportedProtocol", False, False, "broken"),
    _E.TLSVerificationError: Row("TLSVerificationError", False, False, "failed"),
    _E.UnsupportedContentEncoding: Row("UnsupportedContentEncoding", False, False, "failed"),
    _E.ResponseTooLarge: Row("ResponseTooLarge", False, False, "failed"),
    OSError: Row("ConnectionError", True, False, "broken"),
}
"""One row per exception class; an exception takes its most specific class's row."""

TRANSPORT_EXCEPTIONS: tuple[type[BaseException], ...] = tuple(EXCEPTION_ROWS)
"""What a Worker catches around ``post``: everything else is a bug and propagates."""

_BY_TYPE: dict[type[BaseException], Row] = {}  # memo: one MRO walk per exception type


def exception_row(exc: BaseException) -> Row:
    """The row of the most specific class in :data:`EXCEPTION_ROWS` that ``exc`` is an
    instance of; TypeError for an exception no row covers (a bug, not a failure)."""
    cls = type(exc)
    row = _BY_TYPE.get(cls)
    if row is None:
        for base in cls.__mro__:
            row = EXCEPTION_ROWS.get(base)
            if row is not None:
                _BY_TYPE[cls] = row
                break
        else:
            raise TypeError(f"unmapped transport exception {cls.__name__}") from exc
    return row


def outcome_from_exception(exc: BaseException) -> AttemptError:
    """Map a transport exception to an outcome (the only place this is done)."""
    row = exception_row(exc)
    return row.error(f"{type(exc).__name__}: {str(exc) or type(exc).__name__}")


TIMEOUT = Row("TimeoutError", True, False, "timeout")


def timeout_outcome(timeout_s: float) -> AttemptError:
    """The attempt did not finish within TIMEOUT_S (connect + send + wait + read)."""
    return TIMEOUT.error(f"attempt exceeded timeout_s={timeout_s:g}", 408)


# -- answers --------------------------------------------------------------------------

MALFORMED_RESPONSE = Row("MalformedResponse", True, False, "failed")
"""A 2xx body that is not a completion (not JSON, not an object, no ``choices``)."""
EMPTY_CONTENT = Row("EmptyContent", False, False, "failed")
"""A 2xx completion with no text, no tool call, no refusal and no reasoning."""
TRUNCATED = Row("Truncated", False, False, "failed")
"""``finish_reason: "length"`` before any content or tool call (max_tokens spent)."""
CONTENT_FILTERED = Row("ContentFiltered", False, False, "failed")
"""``finish_reason: "content_filter"``, or an error code ``content_filter`` /
``content_policy_violation``."""
CONTEXT_LENGTH_EXCEEDED = Row("ContextLengthExceeded", False, False, "failed")
"""The prompt (plus max_tokens) does not fit the model's context."""
QUOTA_EXCEEDED = Row("QuotaExceeded", False, False, "failed")
"""A 429/403 whose error code or type says quota or billing: systemic, and not
overload (flow control must not slow down for it: the batch stops)."""

_STATUS_ROWS: dict[int, Row] = {
    status: Row(
        "HTTPError", is_retryable_status(status), is_overload_status(status),
        "overload" if is_overload_status(status) else "failed",
    )
    for status in range(100, 600)
}  # fmt: skip


def status_row(status: int) -> Row:
    """The row of a non-2xx answer that names no class of its own."""
    row = _STATUS_ROWS.get(status)
    if row is None:
        overload = is_overload_status(status)
        row = Row("HTTPError", is_retryable_status(status), overload, "failed")
    return row


# Words in an error body worth decoding it for (the common answer is skipped unread).
# The patterns are compiled on first use (re's cache): most runs see no error answer.
_QUOTA_HINT = rb"(?i)quota|billing"
_REFUSAL_HINT = rb"(?i)context|token|too long|content_"
_QUOTA_WORDS = ("quota", "billing")
_CONTEXT = (
    r"(?i)context_length_exceeded|maximum context length|context length|context window"
    r"|exceeds? the (?:available )?context|context size|prompt is too long"
    r"|input is too long|too many (?:input )?tokens|tokens.{0,60}must be <= \d+"
    r"|maximum (?:input|prompt) length"
)
_FILTER_CODES = frozenset({"content_filter", "content_policy_violation"})
_MAX_SCAN_BYTES = 64 * 1024


def named_answer_row(status: int, body: bytes) -> Row | None:
    """The named class of a non-2xx answer that retrying cannot fix, or None:
    :data:`QUOTA_EXCEEDED` (a 429 or 403 whose error ``code`` or ``type`` says quota
    or billing: OpenAI's ``insufficient_quota``, ``billing_hard_limit_reached``),
    :data:`CONTENT_FILTERED` (a 4xx with code or type ``content_filter`` /
    ``content_policy_violation``), :data:`CONTEXT_LENGTH_EXCEEDED` (a 400, 413 or 422
    with code ``context_length_exceeded`` or the message vLLM, llama.cpp, TGI, Ollama
    and others give: "maximum context length", "exceeds the available context size",
    "prompt is too long", "must be <= N tokens"...). A body without a hint word is not
    decoded."""
    if len(body) > _MAX_SCAN_BYTES:
        return None
    if status in (429, 403):
        if re.search(_QUOTA_HINT, body) is None:
            return None
        code, kind, _ = _error_fields(body)
        if any(word in text for text in (code, kind) for word in _QUOTA_WORDS):
            return QUOTA_EXCEEDED
        return None
    if not 400 <= status < 500 or re.search(_REFUSAL_HINT, body) is None:
        return None
    code, kind, message = _error_fields(body)
    if code in _FILTER_CODES or kind in _FILTER_CODES:
        return CONTENT_FILTERED
    if status in (400, 413, 422) and (
        code == "context_length_exceeded" or re.search(_CONTEXT, message) is not None
    ):
        return CONTEXT_LENGTH_EXCEEDED
    return None


def _error_fields(body: bytes) -> tuple[str, str, str]:
    """``(code, type, message)`` of an error body, lower-cased ("" when absent); a body
    that is not JSON is all message."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return "", "", body.decode("utf-8", "replace")
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, str):
        return "", "", error
    if not isinstance(error, dict):
        return "", "", body.decode("utf-8", "replace")
    code, kind = error.get("code"), error.get("type")
    message = error.get("message") or error.get("detail") or error.get("msg") or ""
    if isinstance(data, dict) and not message:
        message = data.get("detail") or data.get("message") or ""
    return (
        code.lower() if isinstance(code, str) else "",
        kind.lower() if isinstance(kind, str) else "",
        message if isinstance(message, str) else json.dumps(message),
    )
