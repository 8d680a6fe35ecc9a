"""Which failed attempts are not the request's: :func:`excused`.

The Worker marks an attempt *excused* when its failure is the client's own business
(an outage probe) or, with several endpoints, an endpoint's (found down while another
is up); the request door then sends the request again at once, without counting the
attempt against ``MAX_ATTEMPTS`` and without a backoff. Pure: no I/O, no clock.
"""

from __future__ import annotations

from minimallm._outcome.attempts import AttemptError, AttemptOutcome
from minimallm._policy.flow import QUIET_AFTER
from minimallm.actors.admission import Admission

__all__ = ["excused"]


def excused(
    result: AttemptOutcome,
    probe: str | None,
    moves: int = 0,
    admission: Admission | None = None,
    sent_at: float = 0.0,
) -> AttemptOutcome:
    """An outage probe that found no server is the client's own business, not an
    attempt of its request. So is, with several endpoints and another one up, an
    attempt that

    - found no server (it never reached one);
    - or timed out, sent at ``sent_at``, while the endpoint answered nothing sent
      after it (a silent endpoint: a blackhole, a hung server). One caught in a
      blackhole that ended before its TIMEOUT_S, with later attempts answered, cannot
      be told from a request too long for TIMEOUT_S, and counts.

    The request goes again at once, to whichever endpoint takes it: that may be the
    same one (its idle Workers may be first in line), until its flow control finds it
    down and holds it, which takes :data:`~minimallm._policy.flow.QUIET_AFTER` such
    attempts in a row, all of them this request's when it is the endpoint's only
    traffic (the last of a batch, a lone call). ``moves`` (the request's excused
    attempts so far) bounds how often, to that many per endpoint, so a request does
    not bounce for ever between endpoints nobody holds, and one too long for
    TIMEOUT_S, timing out everywhere, counts in the end. With several endpoints the
    bound holds for an outage probe that timed out too: such a lone request gets every
    endpoint held (it looks silent everywhere) and is then every outage's probe; it
    must not be excused until the outage budget runs out."""
    if not isinstance(result, AttemptError):
        return result
    kind = result.kind
    # with several endpoints, how often one request moves on (see above)
    moving = admission is None or moves < QUIET_AFTER * admission.endpoints
    if probe == "outage" and (kind == "unreachable" or (kind == "timeout" and moving)):
        return result._replace(excused=True)
    if admission is None or not moving or not admission.others_up():
        return result
    if kind == "unreachable" or (kind == "timeout" and admission.answered_sent < sent_at):
        return result._replace(excused=True)
    return result
