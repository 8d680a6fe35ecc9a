"""When one request tries again, and when it gives up: attempts, refusals, long waits.

Two kinds of retryable answers, two budgets:

- **Failures** (a 500, a timeout, a reset, a malformed body: anything retryable that is
  not an overload answer) count against ``MAX_ATTEMPTS`` (0: no limit), with the
  exponential backoff of :func:`~minimallm._policy.retry.backoff_delay`.
- **Refusals** (429/502/503/504, :data:`~minimallm._policy.retry.OVERLOAD_STATUSES`)
  are the server's signal to flow control, not a fault of the request: a request
  refused while the server answers others has done nothing wrong, and flow control
  (the Limiter, Pacer and Cooldown) already decides how fast everyone sends. They do
  not count against ``MAX_ATTEMPTS``; they are bounded by *time*: a request gives up
  when its next attempt would go out more than ``MAX_WAIT_S`` after its first refusal
  (:meth:`RetryState.send_by`; one held that long by the client's shared pause ends
  then, while it waits), or at once when the server asks it to wait longer than that
  (``Retry-After: 86400``: a daily quota). The failure then names the wait
  (:attr:`GiveUp.reason`), so a batch where every request gets it stops with one line
  saying why (``_batch/budget.py``'s "all alike").

The delay before the next attempt is :func:`~minimallm._policy.retry.retry_delay`: the
server's Retry-After if it gave one (capped at ``COOLDOWN_CAP_S``), else the backoff —
for a failure with every attempt so far as the attempt number, for a refusal always
the first step (``BASE_BACKOFF_S``, jittered): when everyone may send again after
refusals is decided once for all by flow control (the concurrency limit, the learned
rate, the shared pause), not by each request's own doubling. A
Retry-After beyond ``COOLDOWN_CAP_S`` is capped, and reported once per backend through
``on_long_wait`` (the runtime makes it a warning) instead of silently.

Pure: no I/O, no clock (``now`` is passed in, seconds); randomness from the policy's
``rng``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from typing import NamedTuple

from minimallm._policy.retry import retry_delay

__all__ = ["GiveUp", "RetryPolicy", "RetryState", "describe_wait"]

DEFAULT_MAX_WAIT_S = 300.0
"""``MAX_WAIT_S``'s default (seconds): how long a request may be refused in all."""


def describe_wait(seconds: float) -> str:
    """A wait in words, coarse enough to read the same for every request refused with
    the same hint (``45 s``, ``12 min``, ``24 h``)."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.0f} h"


class GiveUp(NamedTuple):
    """The request ends with its last attempt's failure; ``reason`` (None: the failure
    speaks for itself, i.e. not retryable or out of attempts) is added to its message."""

    reason: str | None = None


FINAL = GiveUp()


class RetryPolicy:
    """The backend's retry settings (one per backend; see the module docstring)."""

    __slots__ = (
        "_warned",
        "base_s",
        "cap_s",
        "jitter",
        "max_attempts",
        "max_s",
        "max_wait_s",
        "on_long_wait",
        "rng",
    )

    def __init__(
        self,
        *,
        max_attempts: int,
        base_s: float,
        max_s: float,
        jitter: float,
        cap_s: float,
        max_wait_s: float = DEFAULT_MAX_WAIT_S,
        rng: random.Random | None = None,
        on_long_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.max_s = max_s
        self.jitter = jitter
        self.cap_s = cap_s
        self.max_wait_s = max_wait_s
        self.rng = rng or random.Random()
        self.on_long_wait = on_long_wait
        self._warned = False

    def __repr__(self) -> str:
        return (
            f"<RetryPolicy max_attempts={self.max_attempts} max_wait_s={self.max_wait_s:g}"
            f" cap_s={self.cap_s:g}>"
        )

    def _long_wait(self, retry_after_s: float) -> None:
        if self._warned or self.on_long_wait is None:
            return
        self._warned = True
        self.on_long_wait(
            f"the server asks to wait {describe_wait(retry_after_s)} (Retry-After), longer "
            f"than COOLDOWN_CAP_S={self.cap_s:g}s: retrying after {self.cap_s:g}s instead; "
            f"requests refused for more than MAX_WAIT_S={self.max_wait_s:g}s fail"
        )


class RetryState:
    """One request's retries so far (made at its first retryable failure: a request
    answered at once never builds one)."""

    __slots__ = ("failures", "policy", "refusals", "refused_since")

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.failures = 0
        """Attempts that counted against MAX_ATTEMPTS (failures, not refusals)."""
        self.refusals = 0
        """Overload answers (429/502/503/504) so far."""
        self.refused_since: float | None = None
        """When the first refusal came (seconds), or None."""

    def __repr__(self) -> str:
        return f"<RetryState failures={self.failures} refusals={self.refusals}>"

    def after(
        self,
        now: float,
        *,
        retryable: bool,
        overload: bool,
        retry_after_s: float | None = None,
    ) -> float | GiveUp:
        """An attempt ended at ``now`` without success: the seconds to wait before the
        next one, or :class:`GiveUp`."""
        p = self.policy
        if not retryable:
            return FINAL
        if retry_after_s is not None and retry_after_s > p.max_wait_s:
            return GiveUp(
                f"the server asks to wait {describe_wait(retry_after_s)} (Retry-After), "
                f"longer than MAX_WAIT_S={p.max_wait_s:g}s"
            )
        if overload:
            self.refusals += 1
            if self.refused_since is None:
                self.refused_since = now
        else:
            self.failures += 1
            if p.max_attempts and self.failures >= p.max_attempts:
                return FINAL
        n = self.failures + self.refusals
        if retry_after_s is not None and retry_after_s > p.cap_s:
            p._long_wait(retry_after_s)
        delay = retry_delay(
            # a refusal waits the server's word or one base backoff: how fast everyone
            # sends is flow control's business (the Limiter, Pacer and Cooldown)
            1 if overload else n,
            retry_after_s,
            base_s=p.base_s,
            max_s=p.max_s,
            jitter=p.jitter,
            cap_s=p.cap_s,
            rng=p.rng,
        )
        since = self.refused_since
        if overload and since is not None and now + delay - since > p.max_wait_s:
            # the next attempt would go out after the request's time is up
            return self.expired()
        return delay

    def send_by(self) -> float:
        """When the request's next attempt must have gone out (seconds): MAX_WAIT_S
        after its first refusal (inf before any). A request still waiting then (held by
        the client's shared pause) ends as :meth:`expired`, not at its next attempt."""
        since = self.refused_since
        return math.inf if since is None else since + self.policy.max_wait_s

    def expired(self) -> GiveUp:
        """The request was refused (or held after refusals) for MAX_WAIT_S."""
        return GiveUp(f"refused for longer than MAX_WAIT_S={self.policy.max_wait_s:g}s")
