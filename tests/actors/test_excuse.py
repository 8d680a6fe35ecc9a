"""Which failed attempts the Worker excuses (not counted against the request): an
outage probe that found no server, and with several endpoints, while another one is
up, an attempt that found no server or timed out at a silent endpoint (the request
moves on), a bounded number of times per request."""

from __future__ import annotations

from minimallm._http import errors as http_errors
from minimallm._outcome.attempts import AttemptSuccess
from minimallm._outcome.classify import outcome_from_exception, timeout_outcome
from minimallm._policy.flow import QUIET_AFTER
from minimallm.actors.admission import Admission
from minimallm.actors.excuse import excused

REFUSED = outcome_from_exception(http_errors.ConnectError("connection refused"))
RESET = outcome_from_exception(http_errors.ReadError("connection reset"))
TIMEOUT = timeout_outcome(60.0)


def fleet(n: int) -> list[Admission]:
    members: list[Admission] = []
    for _ in range(n):
        Admission(members)
    return members


def test_an_outage_probe_that_found_no_server_is_excused() -> None:
    assert excused(REFUSED, "outage").excused
    assert excused(TIMEOUT, "outage").excused
    assert not excused(RESET, "outage").excused
    assert not excused(REFUSED, "cooldown").excused
    assert not excused(REFUSED, None).excused  # one endpoint: it counts


def test_with_several_endpoints_a_probe_timeout_counts_once_the_request_moved_enough() -> None:
    # a lone request too long for TIMEOUT_S gets every endpoint held (it is all their
    # traffic, and they look silent); it must not then be their excused probe for ever
    a, _b = fleet(2)
    assert excused(TIMEOUT, "outage", 2 * QUIET_AFTER - 1, a).excused
    assert not excused(TIMEOUT, "outage", 2 * QUIET_AFTER, a).excused
    assert excused(REFUSED, "outage", 2 * QUIET_AFTER, a).excused  # it never got there
    assert excused(TIMEOUT, "outage", 100).excused  # one endpoint: as before


def test_no_server_while_another_endpoint_is_up_moves_the_request() -> None:
    a, b = fleet(2)
    assert excused(REFUSED, None, 0, a).excused
    # as often as flow control needs to find each endpoint down, then it counts
    assert excused(REFUSED, None, 2 * QUIET_AFTER - 1, a).excused
    assert not excused(REFUSED, None, 2 * QUIET_AFTER, a).excused
    # a reset may be the request's own doing (the server saw it): it counts
    assert not excused(RESET, None, 0, a).excused
    b.outage = True  # every other endpoint is down: it counts, the ordinary way
    assert not excused(REFUSED, None, 0, a).excused


def test_a_timeout_at_a_silent_endpoint_moves_the_request_until_it_can_be_held() -> None:
    a, _b = fleet(2)
    a.answered_sent = 10.0  # the endpoint answered an attempt sent at 10.0
    assert excused(TIMEOUT, None, 0, a, sent_at=12.0).excused  # nothing since 12.0: silent
    # a lone request may be all the endpoint's traffic: excused as often as its flow
    # control needs to hold it (QUIET_AFTER in a row), then it counts (too long for
    # TIMEOUT_S: it timed out everywhere)
    assert excused(TIMEOUT, None, 2 * QUIET_AFTER - 1, a, sent_at=12.0).excused
    assert not excused(TIMEOUT, None, 2 * QUIET_AFTER, a, sent_at=12.0).excused
    # it answered attempts sent after this one: this request is slow, not the endpoint
    assert not excused(TIMEOUT, None, 0, a, sent_at=9.0).excused


def test_a_success_is_never_touched() -> None:
    ok = AttemptSuccess("hi", {})
    (a,) = fleet(1)
    assert excused(ok, "outage", 0, a) is ok
