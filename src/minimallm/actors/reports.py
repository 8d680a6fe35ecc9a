"""A Worker's :class:`AttemptReport`: how it is built (:func:`report_of`), and where it
goes (:func:`deliver`, the fan-out).

Every report goes to the Limiter (the permit's fate is in it: never dropped; when the
Limiter is behind, :func:`deliver` says so and the Worker waits to hand it over). The
others are fed only what they learn from, and
lossily: the Pacer an answer with rate headers, the Cooldown an overload or a probe's
answer (with several endpoints, also a connection failure or a timeout: an endpoint
given up may be held again), the request's own events channel every report but a
success's (the request's answer tells its batch's Monitor that one itself). With
several endpoints the endpoint's :class:`~minimallm.actors.admission.Admission` also
learns when the latest answered attempt was sent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from minimallm._outcome.attempts import AttemptOutcome, AttemptSuccess
from minimallm.actors.messages import AttemptReport

if TYPE_CHECKING:
    from minimallm.actors.worker import WorkerChannels

__all__ = ["deliver", "report_of"]


def report_of(
    result: AttemptOutcome,
    sent_at: float,
    done_at: float,
    probe: str | None,
    kept: bool,
    revoked: bool,
) -> AttemptReport:
    """The report of an attempt sent at ``sent_at`` and ended at ``done_at`` with
    ``result``; ``probe``: why the Pacer had it probe (None: no probe); ``kept``: the
    Worker keeps its permit; ``revoked``: the Worker gave it back because the Limiter
    asked (else a permit given back was refused)."""
    kind = result.kind
    if isinstance(result, AttemptSuccess):
        return AttemptReport(
            sent_at, done_at, kind, None, result.rate, result.total_tokens, probe, kept
        )
    return AttemptReport(
        sent_at,
        done_at,
        kind,
        result.retry_after_s,
        result.rate,
        None,
        probe,
        kept,
        result.status,
        not kept and not revoked,
    )


def deliver(
    ch: WorkerChannels,
    report: AttemptReport,
    events: trio.MemorySendChannel[Any] | None,
) -> bool:
    """Send ``report`` where it belongs (see the module docstring), without waiting:
    False when the Limiter's inbox is full and it did not take the report (the caller
    then waits to send it there: ``await ch.limiter.send(report)``)."""
    kind = report.kind
    admission = ch.admission
    if admission is not None and report.answered and report.sent_at > admission.answered_sent:
        admission.answered_sent = report.sent_at
    try:  # every report (the permit's fate is in it): never dropped
        ch.limiter.send_nowait(report)
        taken = True
    except trio.WouldBlock:
        taken = False  # the Limiter is behind: the caller waits for it
    if report.rate is not None:  # the server's word about its rate
        _send_lossy(ch.pacer, report)
    if kind == "overload" or report.probe is not None:
        _send_lossy(ch.cooldown, report)
    elif admission is not None and kind in ("unreachable", "timeout"):
        _send_lossy(ch.cooldown, report)  # an endpoint given up may be held again
    if events is not None and kind != "ok":
        _send_lossy(events, report)
    return taken


def _send_lossy(channel: trio.MemorySendChannel[Any], report: AttemptReport) -> None:
    """Reports feed estimates; one lost to a full inbox (an actor starved for thousands
    of attempts) costs a sample, while blocking a Worker would cost throughput."""
    try:  # noqa: SIM105  (on the hot path: suppress() costs a context manager per report)
        channel.send_nowait(report)
    except (trio.WouldBlock, trio.BrokenResourceError, trio.ClosedResourceError):
        pass
