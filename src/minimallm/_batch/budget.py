"""When a batch gives up: the failure budget, failures that are all alike, the tokens.

Three rules, all pure:

- **Systemic at once.** A ``QuotaExceeded`` failure (the account's quota or billing
  limit) stops the batch at the first one: every other item would fail the same way.

- **All alike from the start.** When the first ``alike_after`` items to finish all
  failed in the same way (same error type, status and message) and none succeeded, the
  fault is not in the items: a wrong key (401), an unknown model (404), a server that is
  not there. The batch stops at once and says so in one line, with the likely fix,
  instead of spending the whole failure budget and printing the same failure over.
- **The budget.** More than ``max_failures`` failures (None: never) stop the batch;
  the message says they are failures of single items and which setting to raise.

Both messages start with ``Aborting batch: N failures`` (SPEC §4).

- **The tokens.** Once the answers used ``max_total_tokens`` tokens (``MAX_TOTAL_TOKENS``;
  prompt plus completion as the servers reported them; None: no limit), the batch stops
  like an abort, with its partial results (:class:`TokenBudgetExceededError`). Cache
  hits use none. In a batch of user functions whose LM calls are counted
  (``run_dspy_batch``), their tokens count too, checked as each item ends.
"""

from __future__ import annotations

from collections import deque

from minimallm._progress.calls import CallCounter
from minimallm._progress.text import failure_summary
from minimallm._types import MinimaLlmFailure

__all__ = ["FailureBudget", "TokenBudget", "fix_for"]

ALIKE_AFTER = 5
"""Identical failures, with no success before them, that stop a batch at once."""


def fix_for(f: MinimaLlmFailure) -> str:
    """What to check when every request fails like ``f``."""
    if f.error_type == "QuotaExceeded":
        return "check the plan and billing of OPENAI_API_KEY"
    if f.status in (401, 403):
        return "check OPENAI_API_KEY (or OPENAI_TOKEN)"
    if f.status == 404:
        return "check OPENAI_MODEL and OPENAI_BASE_URL"
    if f.status == 400 or f.status == 422:
        return "the server refuses these requests as they are: check the request fields"
    if f.error_type == "ConnectError":
        return "check OPENAI_BASE_URL: is the server running and reachable?"
    if f.error_type in ("ProxyError", "ProxyRejectedError"):
        return "check the proxy settings (HTTP_PROXY, HTTPS_PROXY, NO_PROXY)"
    if f.error_type == "TimeoutError":
        return "the server did not answer within TIMEOUT_S"
    if f.error_type == "InvalidRequest":
        return "fix the requests"
    return "see the failure above"


def _signature(f: MinimaLlmFailure) -> tuple[str, int | None, str]:
    return (f.error_type, f.status, f.message)


class FailureBudget:
    """Counts failures and decides when the batch stops; keeps the last ``keep``
    failures for the abort message and :attr:`BatchAbortedError.failures`."""

    __slots__ = ("_alike", "_first", "alike_after", "count", "max_failures", "recent", "successes")

    def __init__(
        self, max_failures: int | None, keep: int, *, alike_after: int = ALIKE_AFTER
    ) -> None:
        self.max_failures = max_failures
        self.alike_after = alike_after
        self.count = 0
        self.successes = 0
        self.recent: deque[MinimaLlmFailure] = deque(maxlen=max(keep, 1))
        self._first: tuple[str, int | None, str] | None = None
        self._alike = True  # every failure so far was like the first, and nothing succeeded

    def __repr__(self) -> str:
        return f"<FailureBudget {self.count}/{self.max_failures}>"

    def success(self) -> None:
        """An item succeeded (the failures cannot be 'all alike from the start' now)."""
        self.successes += 1
        self._alike = False

    def record(self, failure: MinimaLlmFailure) -> str | None:
        """Count one failure; the abort message when the batch must stop, else None."""
        self.count += 1
        self.recent.append(failure)
        if failure.error_type == "QuotaExceeded":
            return (
                f"Aborting batch: {self.count} failures: the account's quota is exhausted "
                f"(QuotaExceeded), so every request would fail: {_message(failure)} "
                "(check the plan and billing of OPENAI_API_KEY)"
            )
        signature = _signature(failure)
        if self._first is None:
            self._first = signature
        elif signature != self._first:
            self._alike = False
        if self._alike and self.max_failures is not None and self.count >= self.alike_after:
            return (
                f"Aborting batch: {self.count} failures: every request failed: "
                f"{_message(failure)} ({fix_for(failure)})"
            )
        if self.max_failures is not None and self.count > self.max_failures:
            return self._budget_message()
        return None

    def _budget_message(self) -> str:
        lines = [
            f"Aborting batch: {self.count} failures (max_failures={self.max_failures}): "
            f"failures of single items, not all alike; raise BATCH_MAX_FAILURES "
            f"(or set it to none) to let such a batch go on. "
            f"Recent failures ({len(self.recent)}):"
        ]
        lines.extend(f"  - {failure_summary(f)}" for f in self.recent)
        return "\n".join(lines)


class TokenBudget:
    """Counts the tokens a batch's answers used; says when ``max_total_tokens`` is
    reached (None: never)."""

    __slots__ = ("_calls", "answers", "completion", "max_total_tokens", "prompt")

    def __init__(self, max_total_tokens: int | None, calls: CallCounter | None = None) -> None:
        self.max_total_tokens = max_total_tokens
        self.prompt = self.completion = self.answers = 0
        self._calls = calls  # LM calls the items' own code made (run_dspy_batch)

    def __repr__(self) -> str:
        return f"<TokenBudget {self.used}/{self.max_total_tokens}>"

    @property
    def used(self) -> int:
        """Prompt plus completion tokens so far (items' answers and counted LM calls)."""
        if self._calls is None:
            return self.prompt + self.completion
        c = self._calls.counts()
        return self.prompt + self.completion + c.prompt_tokens + c.completion_tokens

    def spend(self, prompt: int | None, completion: int | None) -> str | None:
        """Count one item's answer's tokens (and take in those of the LM calls counted
        so far); the abort message once the budget is used up."""
        if prompt is not None or completion is not None:
            self.answers += 1
            self.prompt += prompt or 0
            self.completion += completion or 0
        elif self._calls is None:
            return None
        limit = self.max_total_tokens
        if limit is None:
            return None
        prompt_all, completion_all, answers = self.prompt, self.completion, self.answers
        if self._calls is not None:
            c = self._calls.counts()
            prompt_all += c.prompt_tokens
            completion_all += c.completion_tokens
            answers += c.ended - c.cached - c.failed
        used = prompt_all + completion_all
        if used < limit:
            return None
        return (
            f"Aborting batch: {used:,} tokens used (prompt {prompt_all:,}, "
            f"completion {completion_all:,}, by {answers:,} answers) reached "
            f"MAX_TOTAL_TOKENS={limit:,}; the results so far are kept (.results); "
            "raise MAX_TOTAL_TOKENS (or unset it) to let such a batch go on"
        )


def _message(f: MinimaLlmFailure) -> str:
    if f.message.startswith("HTTP ") or f.status is None:
        return f.message
    return f"HTTP {f.status}: {f.message}"
