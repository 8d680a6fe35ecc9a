"""``request()``: the one door through which every request reaches the server.

One request's whole path on this side of the Workers, top to bottom:

1. **key**: the prompt cache's key (given by a batch whose bulk lookup missed);
2. **recent answers**: this process's own answer, before it commits;
3. **single flight**: an identical request in flight is joined, not repeated;
4. **lookup**: one disk read (skipped by ``force_refresh`` and after a bulk miss);
5. **encode** the body once;
6. **attempts**: with ``TPM``, reserve the request's token estimate (settled with the
   answer's usage, :mod:`.tokens`); hand a :class:`~minimallm.actors.messages.Job` to
   the Worker pool, wait for its :class:`~minimallm.actors.messages.Reply`, back off
   and try again while the outcome says so (after refusals, the wait for the next
   attempt to go out, a shared pause included, ends MAX_WAIT_S after the first);
7. **store** a success (to the CacheWriter).

What happens between the job and the reply (permit, slot, socket) is the Worker's
(``actors/worker.py``); flow control is in the Limiter, Pacer and Cooldown actors and
their pure cores (``_policy/``). A caller's request costs three task switches here:
the Worker wakes for the job, the Worker wakes when the answer arrives, the caller
wakes for the reply. A batch's item costs one: its door runs in the task of the Worker
that took it (``worker``), whose connection makes the first attempt; the door lets go
of the Worker (:meth:`~minimallm.actors.worker.Worker.let_go`) before it waits on other
requests (an identical one in flight, a cache read, tokens, a backoff, an endpoint
held), and its later attempts go through the queue as a caller's do. Storing the
answer may wait for the CacheWriter with the Worker held (it needs no Worker).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, NamedTuple

import trio

from minimallm._cache.flight import Flight
from minimallm._errors import InvalidRequestError
from minimallm._outcome.attempts import AttemptError, AttemptOutcome, AttemptSuccess
from minimallm._outcome.redact import MESSAGE_CHARS, redacted_raw, snippet
from minimallm._policy.retrying import GiveUp, RetryState
from minimallm._policy.tokens import Reservation
from minimallm._requests import encode_request, reask_request
from minimallm._runtime.serve import Runtime
from minimallm._runtime.tokens import TokenGate
from minimallm._types import (
    MinimaLlmFailure,
    MinimaLlmRequest,
    MinimaLlmResponse,
    MinimaLlmResult,
    replace_response,
)
from minimallm.actors.messages import Job, Reply

if TYPE_CHECKING:
    from minimallm.actors.worker import Worker

__all__ = ["Traced", "invalid_request", "request"]


class Traced(NamedTuple):
    """One request's result, the HTTP attempts it took, when the first went out (trio
    time, seconds; None when none did: a cache hit, an invalid request), the
    server's time for the attempt that answered (seconds; None when none did), and
    that answer's decoded ``usage`` (empty when it had none; None when no answer came
    from the server in this call), from which a batch reads its token details."""

    result: MinimaLlmResult
    attempts: int
    first_sent_at: float | None
    server_s: float | None = None
    usage: Mapping[str, Any] | None = None


async def request(
    rt: Runtime,
    req: MinimaLlmRequest,
    *,
    force_refresh: int = 0,
    missed_key: str | None = None,
    events: trio.MemorySendChannel[Any] | None = None,
    index: int | None = None,
    worker: Worker | None = None,
    order: int = 0,
) -> Traced:
    """Answer ``req``: from the cache, by joining an identical call in flight, or from
    the server. ``force_refresh`` (0, or the number of this re-ask; ``True`` is 1)
    skips every read (the answer still overwrites the entry under the request's own
    key) and sends a seed and, for a request without a temperature, a rising one
    (``_requests.reask_request``); ``missed_key``: a batch's bulk lookup already
    missed under this key (no second hash, no second read); ``events``: a batch
    Monitor's inbox for the report of every attempt that did not answer the request;
    ``index``: the request's place in its batch (named when it is invalid);
    ``worker``: the Worker whose task runs this door (a batch's item, see
    :class:`~minimallm.actors.messages.ItemJob`): the first attempt goes out on its
    connection, and the door lets go of it before waiting for anything else; ``order``:
    the request's number in the order requests arrived, when its caller gave it one
    (0: numbered here). Raises only
    :class:`~minimallm.BackendClosedError` (or its subclass ``BackendFailedError``):
    anything the server does is in the result.

    Encoded once, then attempted until success or a final failure, backing off between
    attempts: failures count against MAX_ATTEMPTS (0: no limit), refusals against
    MAX_WAIT_S (:mod:`minimallm._policy.retrying`)."""
    # 1. the key (none without a cache, or for a request that cannot be encoded)
    cache = rt.cache
    key = missed_key
    if cache is not None and key is None:
        key = cache.key(req)
    flight: Flight | None = None
    # CACHE_FORCE_REFRESH skips every read too, but asks the same request (no re-ask)
    skip_reads = cache is None or not key or bool(force_refresh) or cache.force_all
    if cache is not None and key:
        # 2-3. Recent answers, then single flight. Every check and the registration
        # below happen without a checkpoint in between, so identical calls that arrive
        # while the leader reads the disk join its flight instead of starting a second.
        while True:
            if not skip_reads:
                recent = cache.recent(key)
                if recent is not None:
                    return Traced(
                        replace_response(recent, request_id=req.request_id, cached=True), 0, None
                    )
            flight = cache.flights.get(key)
            if flight is None:
                break
            _let_go(worker)  # the leader may need a Worker to answer
            worker = None
            await flight.done.wait()
            shared = flight.result
            # None: the leader was cancelled; a cached answer is no answer for a caller
            # that asked for a fresh one. Either way, look again (and maybe lead).
            if shared is not None and not (skip_reads and _is_cached(shared)):
                return Traced(replace_response(shared, request_id=req.request_id), 0, None)
        flight = cache.flights[key] = Flight()
    try:
        # 4. one disk read
        if flight is not None and not skip_reads and missed_key is None:
            assert cache is not None and key is not None
            _let_go(worker)
            worker = None
            hit = await cache.lookup(req, key)
            if hit is not None:
                flight.result = hit
                return Traced(hit, 0, None)
        # 5. encode once (a re-ask with its seed and temperature)
        cfg = rt.cfg
        sent_req = req
        if force_refresh:
            sent_req = reask_request(
                req, force_refresh, cfg.retry_temperature_max, cfg.retry_temperature_halflife
            )
        try:
            body = encode_request(cfg.model, sent_req, compress=cfg.compress_gzip, index=index)
        except InvalidRequestError as exc:
            body = None
            traced = Traced(invalid_request(sent_req, index, exc), 0, None)
        # 6. the attempts, through the Worker pool, backing off between them
        sent_at: list[float] = []
        retries: RetryState | None = None  # made at the first failure only
        life = rt.life
        if not order:  # the Pacer serves older requests first
            order = life.orders = life.orders + 1
        gate = rt.tokens  # TPM: each attempt reserves its estimate, settled by its usage
        estimate = 0 if gate is None or body is None else gate.estimate(sent_req)
        last: AttemptError | None = None  # the latest attempt's failure
        moves = 0  # attempts excused so far (see actors.excuse.excused)
        attempted: tuple[AttemptOutcome, float, float] | None
        while body is not None:  # (an invalid request makes none)
            if gate is not None:
                _let_go(worker)  # the budget frees up as other requests end
                worker = None
                reservation = await gate.reserve(estimate)
            if worker is not None:  # on the Worker's own connection, in its task
                if life.closed:
                    raise life.closed_error()
                attempted = await worker.attempt_here(body, events, order, moves)
                if attempted is None:  # its endpoint is held: through the queue, to others
                    _let_go(worker)
                    worker = None
                    continue
            elif retries is None:
                attempted = await _attempt(rt, body, events, order, None, moves)
            else:  # after refusals, a wait for the send bounded by MAX_WAIT_S
                attempted = await _attempt_by(rt, body, events, order, retries.send_by(), moves)
            if gate is not None:
                if attempted is None:  # never sent: nothing used
                    gate.settle(reservation, 0, None, None, trio.current_time())
                else:
                    _settle(gate, reservation, attempted[0], attempted[1])
            if attempted is None:  # held (a shared pause) until its MAX_WAIT_S was up
                assert retries is not None and last is not None
                reason = retries.expired().reason
                failure = _failure(rt, sent_req, last, sent_at, reason)
                traced = Traced(failure, len(sent_at), sent_at[0])
                break
            outcome, sent, done = attempted
            if isinstance(outcome, AttemptSuccess):
                response = MinimaLlmResponse(
                    sent_req.request_id,
                    outcome.text,
                    outcome.raw,
                    False,
                    outcome.prompt_tokens,
                    outcome.completion_tokens,
                    outcome.total_tokens,
                )
                first = sent_at[0] if sent_at else sent
                traced = Traced(response, len(sent_at) + 1, first, done - sent, outcome.usage)
                break
            _let_go(worker)  # backoff and retries: without holding the Worker
            worker = None
            if outcome.excused:  # the client's own probe of a server it believes down, or
                moves += 1  # a replica found down while another is up: go again at once
                continue
            last = outcome
            sent_at.append(sent)
            if retries is None:
                retries = RetryState(rt.retry)
            wait = retries.after(
                trio.current_time(),
                retryable=outcome.retryable,
                overload=outcome.overload,
                retry_after_s=outcome.retry_after_s,
            )
            if isinstance(wait, GiveUp):
                failure = _failure(rt, sent_req, outcome, sent_at, wait.reason)
                traced = Traced(failure, len(sent_at), sent_at[0])
                break
            await trio.sleep(wait)
        result = traced.result
        if flight is not None:
            flight.result = result
            if isinstance(result, MinimaLlmResponse):
                assert cache is not None and key is not None
                cache.remember(key, result)  # before the joiners wake
    finally:
        if flight is not None:
            assert cache is not None and key is not None
            del cache.flights[key]
            flight.done.set()
    # 7. store
    if flight is not None and isinstance(result, MinimaLlmResponse):
        assert cache is not None and key is not None
        await cache.store(key, result, req)
    return traced


async def _attempt(
    rt: Runtime,
    body: bytes,
    events: trio.MemorySendChannel[Any] | None,
    order: int,
    waiting: trio.CancelScope | None = None,
    moves: int = 0,
) -> tuple[AttemptOutcome, float, float]:
    """One attempt through the Worker pool: its outcome, when it was sent and when it
    ended;
    ``waiting``: see :func:`_attempt_by`; ``moves``: the request's excused attempts so far
    (see :func:`minimallm.actors.excuse.excused`)."""
    if rt.life.closed:
        raise rt.life.closed_error()
    reply: Reply[tuple[AttemptOutcome, float, float]] = Reply()
    try:
        rt.jobs.put(Job(body, reply, events, order, waiting, moves))
    except trio.ClosedResourceError:
        raise rt.life.closed_error() from None
    return await reply.receive()


async def _attempt_by(
    rt: Runtime,
    body: bytes,
    events: trio.MemorySendChannel[Any] | None,
    order: int,
    send_by: float,
    moves: int = 0,
) -> tuple[AttemptOutcome, float, float] | None:
    """:func:`_attempt`, or None if it had not gone out by ``send_by`` (trio time,
    seconds: MAX_WAIT_S after the request's first refusal). The deadline bounds only
    the wait: the Worker lifts it as it sends, so an attempt once sent is not cut."""
    with trio.CancelScope(deadline=send_by) as waiting:
        return await _attempt(rt, body, events, order, waiting, moves)
    return None


def _let_go(worker: Worker | None) -> None:
    """The door, about to wait for something other than its own attempt, lets go of
    the Worker that runs it (if one does): a Worker waiting on other requests could
    wait for itself."""
    if worker is not None:
        worker.let_go()


def _settle(gate: TokenGate, reservation: Reservation, result: AttemptOutcome, sent: float) -> None:
    """Settle an attempt's reservation: its usage, nothing for an attempt the server
    refused or never saw, the estimate when the server may have worked and said nothing."""
    if isinstance(result, AttemptSuccess):
        prompt, completion = result.prompt_tokens, result.completion_tokens
        used = result.total_tokens
        if prompt is not None and completion is not None:
            used = prompt + completion
        gate.settle(reservation, used, completion, result.rate, sent)
    else:
        refused = result.excused or result.kind in ("overload", "unreachable")
        gate.settle(reservation, 0 if refused else None, None, result.rate, sent)


def _failure(
    rt: Runtime,
    req: MinimaLlmRequest,
    result: AttemptError,
    sent_at: list[float],
    reason: str | None = None,
) -> MinimaLlmFailure:
    secret = rt.secrets
    body = result.body_snippet
    message = result.message if reason is None else f"{result.message} ({reason})"
    return MinimaLlmFailure(
        request_id=req.request_id,
        error_type=result.error_type,
        message=snippet(message, secret, MESSAGE_CHARS, marker="…"),
        attempts=len(sent_at),
        status=result.status,
        body_snippet=None if body is None else snippet(body, secret),
        timeout_s=rt.cfg.timeout_s,
        attempt_timestamps=tuple(sent_at),
        raw=None if result.raw is None else redacted_raw(result.raw, secret),
    )


def _is_cached(result: MinimaLlmResult) -> bool:
    return isinstance(result, MinimaLlmResponse) and result.cached


def invalid_request(req: object, index: int | None, exc: InvalidRequestError) -> MinimaLlmFailure:
    """The failure value of a request that cannot be sent (never an exception)."""
    request_id = getattr(req, "request_id", None)
    if not isinstance(request_id, str):
        request_id = f"item-{index}" if index is not None else "request"
    return MinimaLlmFailure(
        request_id=request_id, error_type="InvalidRequest", message=str(exc), attempts=0
    )
