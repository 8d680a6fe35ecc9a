"""Per-request decisions: which statuses are retried, the backoff formula, what a
server's Retry-After says.

Vocabulary (used the same way everywhere in minimallm):

- *attempt* ``n`` is 1-based; the *failed attempt* is the one that just failed, and the
  delay computed from it is waited before attempt ``n + 1``.
- *backoff* is the computed delay; a server's *Retry-After* replaces it.
- *overload* is a 429/502/503/504 answer; it feeds flow control (``minimallm._policy``).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime

__all__ = [
    "OVERLOAD_STATUSES",
    "RETRYABLE_STATUSES",
    "backoff_bounds",
    "backoff_delay",
    "is_overload_status",
    "is_retryable_status",
    "parse_retry_after",
    "retry_delay",
]

# --------------------------------------------------------------------------- statuses

RETRYABLE_STATUSES: frozenset[int] = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
"""HTTP statuses retried with backoff (SPEC §3.4). Exactly this table: every other
non-2xx status (400, 401, 403, 404, 413, 422, but also 501 and 505, which no retry
can fix) is a final failure."""

OVERLOAD_STATUSES: frozenset[int] = frozenset({429, 502, 503, 504})
"""HTTP statuses that say the *server* (not this request) is overloaded; besides being
retried they feed the shared cooldown so that every worker backs off together."""


def is_retryable_status(status: int) -> bool:
    """Whether a non-2xx HTTP ``status`` is worth another attempt.

    True exactly for :data:`RETRYABLE_STATUSES` (408, 409, 425, 429, 500, 502, 503,
    504). A 2xx never reaches this question (its body decides); any other status,
    including 5xx outside the table such as 501 Not Implemented or 505, is final.
    """
    return status in RETRYABLE_STATUSES


def is_overload_status(status: int) -> bool:
    """Whether ``status`` signals server overload and must extend the shared cooldown.

    True exactly for :data:`OVERLOAD_STATUSES` (429, 502, 503, 504), a subset of the
    retryable statuses.
    """
    return status in OVERLOAD_STATUSES


# --------------------------------------------------------------------------- backoff

# Beyond this many doublings even the smallest positive float (2**-1074) exceeds the
# largest one (< 2**1024), so every larger attempt number gives the same answer.
_MAX_DOUBLINGS = 2100


def _check_backoff_params(failed_attempt: int, base_s: float, max_s: float, jitter: float) -> None:
    if failed_attempt < 1:
        raise ValueError(
            f"failed_attempt must be >= 1 (attempts are 1-based), got {failed_attempt}"
        )
    if not (0.0 <= base_s < math.inf):
        raise ValueError(f"base_s must be a finite number >= 0 seconds, got {base_s!r}")
    if not (0.0 <= max_s < math.inf):
        raise ValueError(f"max_s must be a finite number >= 0 seconds, got {max_s!r}")
    if not (0.0 <= jitter <= 1.0):
        raise ValueError(f"jitter must be between 0 and 1, got {jitter!r}")


def _nominal_backoff(failed_attempt: int, base_s: float, max_s: float) -> float:
    """``min(max_s, base_s * 2**(n-1))`` without overflow for any ``n``."""
    doublings = min(failed_attempt - 1, _MAX_DOUBLINGS)
    try:
        raw = math.ldexp(base_s, doublings)
    except OverflowError:
        return max_s
    return min(max_s, raw)


def backoff_bounds(
    failed_attempt: int, *, base_s: float, max_s: float, jitter: float
) -> tuple[float, float]:
    """The interval ``(low, high)`` in seconds that :func:`backoff_delay` draws from.

    With ``n = failed_attempt`` (1-based)::

        d    = min(max_s, base_s * 2**(n - 1))
        low  = d * (1 - jitter)
        high = min(max_s, d * (1 + jitter))

    so ``0 <= low <= high <= max_s``. The exponent is clamped internally, so a huge
    ``n`` (``MAX_ATTEMPTS=0`` retries forever) simply gives ``d = max_s``.

    Raises ValueError for ``n < 1``, a negative or non-finite ``base_s``/``max_s``, or
    ``jitter`` outside ``[0, 1]``.
    """
    _check_backoff_params(failed_attempt, base_s, max_s, jitter)
    d = _nominal_backoff(failed_attempt, base_s, max_s)
    return d * (1.0 - jitter), min(max_s, d * (1.0 + jitter))


def backoff_delay(
    failed_attempt: int, *, base_s: float, max_s: float, jitter: float, rng: random.Random
) -> float:
    """Seconds to wait before attempt ``n + 1`` after attempt ``n = failed_attempt`` failed.

    Uniform in :func:`backoff_bounds`::

        d     = min(max_s, base_s * 2**(n - 1))
        delay ~ Uniform(d * (1 - jitter), min(max_s, d * (1 + jitter)))

    The upper end is clipped *before* drawing rather than clamping the draw afterwards,
    so delays at the cap stay spread out instead of piling up exactly on ``max_s``
    (which would re-synchronise the retries jitter is meant to scatter). The result is
    never negative and never above ``max_s``. ``rng`` supplies the randomness (seed it
    in tests); with ``jitter=0`` it is not consulted.
    """
    low, high = backoff_bounds(failed_attempt, base_s=base_s, max_s=max_s, jitter=jitter)
    if low == high:
        return low
    # uniform() computes low + (high - low) * r, which may round a hair past high.
    return min(high, max(low, rng.uniform(low, high)))


# --------------------------------------------------------------------------- Retry-After

_NUMBER = r"\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?\s*"  # compiled on first use


def _parse_seconds(value: str) -> float | None:
    """A decimal number of seconds, negative clamped to 0; None if not a finite number."""
    if re.fullmatch(_NUMBER, value) is None:
        return None
    seconds = float(value)
    if not math.isfinite(seconds):  # e.g. "1e999"
        return None
    return max(0.0, seconds)


def _parse_http_date(value: str, now_wall: float) -> float | None:
    """Seconds from ``now_wall`` until an HTTP date, negative clamped to 0; None if invalid."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" means UTC with unknown origin (RFC 5322)
        when = when.replace(tzinfo=UTC)
    try:
        delta = when.timestamp() - now_wall
    except (OverflowError, ValueError):
        return None
    return max(0.0, delta) if math.isfinite(delta) else None


def parse_retry_after(headers: Mapping[str, str], *, now_wall: float) -> float | None:
    """How long (seconds) the server asked us to wait, or None if it did not say.

    ``headers`` is looked up with lower-case keys (a plain dict with lower-case keys or
    an ``httpx.Headers``). Precedence:

    1. ``retry-after-ms``: a number of milliseconds (``"1500"``, ``"250.5"``) → ``ms/1000``;
       if it is not a valid number it is ignored and ``retry-after`` is tried.
    2. ``retry-after``: a number of seconds (``"3"``, ``"2.5"``) or an HTTP date
       (``"Wed, 21 Oct 2015 07:28:00 GMT"``), the latter converted to a delay relative
       to ``now_wall`` (Unix seconds, i.e. ``time.time()``).
    3. The same two with the ``llm_provider-`` prefix: the upstream provider's hint as
       LiteLLM's proxy forwards it.

    A negative delay or a date in the past gives ``0.0`` (retry now); garbage, NaN and
    infinities give None. The result is not capped here: :func:`retry_delay` caps it.
    """
    for prefix in _PREFIXES:
        ms = headers.get(prefix + "retry-after-ms")
        if ms is not None:
            ms_value = _parse_seconds(ms)
            if ms_value is not None:
                return ms_value / 1000.0
        value = headers.get(prefix + "retry-after")
        if value is None:
            continue
        seconds = _parse_seconds(value)
        if seconds is None:
            seconds = _parse_http_date(value, now_wall)
        if seconds is not None:
            return seconds
    return None


_PREFIXES = ("", "llm_provider-")
"""Where the hint may be: the server's own headers, then the upstream provider's as
LiteLLM's proxy forwards them (``llm_provider-retry-after``)."""


RETRY_AFTER_SPREAD_S = 5.0
"""A Retry-After's jitter is ``jitter`` times this at most (seconds)."""


def retry_delay(
    failed_attempt: int,
    retry_after_s: float | None,
    *,
    base_s: float,
    max_s: float,
    jitter: float,
    cap_s: float,
    rng: random.Random,
) -> float:
    """Seconds to wait before the next attempt, honouring the server if it said so.

    ::

        retry_after_s given:  delay = min(cap_s, ra + U(0, jitter * min(ra, 5)))
                              ra = max(0, retry_after_s)
        otherwise:            delay = backoff_delay(failed_attempt, ...)

    ``cap_s`` is ``COOLDOWN_CAP_S``: a server asking for an hour does not stall a batch
    for an hour (how much longer a request may be refused is ``MAX_WAIT_S``'s business,
    :mod:`minimallm._policy.retrying`). A Retry-After may exceed ``max_s`` (the server
    knows best) but never ``cap_s``. The jitter on a Retry-After only lengthens it (never
    earlier than the server asked), by at most ``5 * jitter`` seconds (1 s with the
    default 0.2): requests refused together do not all come back in the same instant,
    and a window that reopens in a minute is not noticed 12 s late.
    """
    if retry_after_s is not None:
        ra = max(0.0, retry_after_s)
        if jitter and ra:
            ra += rng.uniform(0.0, jitter * min(ra, RETRY_AFTER_SPREAD_S))
        return min(cap_s, ra)
    return backoff_delay(failed_attempt, base_s=base_s, max_s=max_s, jitter=jitter, rng=rng)
