"""Pure decision cores: every decision minimallm makes about when and how often to send.

Nothing here does I/O, sleeps, reads a clock or imports trio. Every function that
depends on time takes ``now`` (seconds, on whatever clock the caller uses), and every
random choice comes from an injected :class:`random.Random`, so the actors that wrap
these cores stay thin and the cores are tested exhaustively (``tests/policy/``).

=================  =================================================  ===============
module             decides                                            used by
=================  =================================================  ===============
``retry``          which answers are retried; backoff; Retry-After    the request path
``ratelimit``      what ``x-ratelimit-*`` headers say                 the Pacer
``congestion``     sporadic vs sustained overload; congestion steps   all three below
``concurrency``    the adaptive concurrency limit (<= MAX_OUTSTANDING) the Limiter
``rate``           the learned send rate (<= the RPM cap)             the Pacer
``counter``        events per second over a sliding window            ``rate``
``pacing``         send times on an absolute schedule; the RPM cap    the Pacer
``cooldown``       how long a shared pause lasts                      the Cooldown
``pause``          when everyone pauses: sustained overload, outages  the Cooldown
``binding``        which limit holds the client back now              progress lines
=================  =================================================  ===============
"""

from minimallm._policy.binding import Binding, binding
from minimallm._policy.concurrency import ConcurrencyControl
from minimallm._policy.congestion import OverloadSignal
from minimallm._policy.cooldown import CooldownState
from minimallm._policy.pacing import PacingSchedule
from minimallm._policy.pause import PauseControl, PauseDecision
from minimallm._policy.rate import RateControl
from minimallm._policy.ratelimit import RateLimitInfo, parse_duration, parse_rate_limit_headers
from minimallm._policy.retry import (
    OVERLOAD_STATUSES,
    RETRYABLE_STATUSES,
    backoff_bounds,
    backoff_delay,
    is_overload_status,
    is_retryable_status,
    parse_retry_after,
    retry_delay,
)

__all__ = [
    "OVERLOAD_STATUSES",
    "RETRYABLE_STATUSES",
    "Binding",
    "ConcurrencyControl",
    "CooldownState",
    "OverloadSignal",
    "PacingSchedule",
    "PauseControl",
    "PauseDecision",
    "RateControl",
    "RateLimitInfo",
    "backoff_bounds",
    "backoff_delay",
    "binding",
    "is_overload_status",
    "is_retryable_status",
    "parse_duration",
    "parse_rate_limit_headers",
    "parse_retry_after",
    "retry_delay",
]
