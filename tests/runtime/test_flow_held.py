"""Requests held in a shared pause are bounded by MAX_WAIT_S while they wait, not only
at their next attempt (issue 16), in virtual time."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm import BatchAbortedError, BatchConfig, BatchProgress, MinimaLlmFailure
from pushback import StormServer, run_virtual_batch

SLACK_S = 1.0
"""A held request ends within this of its deadline (the Pacer's wake-up, a backoff)."""


def ends(
    server: StormServer, n: int, max_wait_s: float, **cfg: Any
) -> tuple[list[Any] | BatchAbortedError, list[tuple[float, MinimaLlmFailure]]]:
    """The results, and (when it ended, the failure) for every failed request."""
    shown: list[tuple[float, MinimaLlmFailure]] = []

    def progress(p: BatchProgress) -> None:
        if p.kind == "failure" and p.failure is not None:
            shown.append((p.elapsed_s, p.failure))

    batch = BatchConfig(heartbeat_s=0, max_failures=None, print_first_failures=n)
    results, _ = run_virtual_batch(
        server, n, progress=progress, max_wait_s=max_wait_s, batch=batch, **cfg
    )
    return results, shown


def test_a_request_held_past_max_wait_fails_when_its_time_is_up_naming_the_wait() -> None:
    # every answer 429 (Retry-After: 1) for an hour: the client pauses and probes,
    # holding every request; each must end MAX_WAIT_S after its first refusal
    results, shown = ends(StormServer(0.1, 0.0, 3600.0), 40, 20.0, max_outstanding=8)
    assert isinstance(results, list)
    assert all(isinstance(r, MinimaLlmFailure) for r in results)
    assert len(shown) == 40
    for at, failure in shown:
        assert "refused for longer than MAX_WAIT_S=20s" in failure.message, failure
        first_refused = failure.attempt_timestamps[0]
        assert at <= first_refused + 20.0 + SLACK_S, (at, failure)


def test_every_request_held_past_max_wait_stops_the_batch_with_one_message() -> None:
    batch = BatchConfig(heartbeat_s=0)
    results, wall = run_virtual_batch(
        StormServer(0.1, 0.0, 3600.0), 200, max_wait_s=20.0, max_outstanding=8, batch=batch
    )
    assert isinstance(results, BatchAbortedError)
    assert "every request failed" in str(results) and "MAX_WAIT_S=20s" in str(results)
    assert wall <= 20.0 + 2 * SLACK_S, wall


@settings(max_examples=15, deadline=None)
@given(
    max_wait_s=st.floats(5.0, 60.0),
    storm_s=st.floats(1.0, 120.0),
    outstanding=st.integers(1, 16),
)
def test_no_request_waits_past_max_wait_after_its_first_refusal(
    max_wait_s: float, storm_s: float, outstanding: int
) -> None:
    """Whatever the storm's length: a request ends (or is answered) within MAX_WAIT_S of
    its first refusal; a request that failed was refused for about that long (it gives
    up early when its next attempt, a Retry-After of 1 s away, would come too late)."""
    results, shown = ends(
        StormServer(0.01, 0.0, storm_s), 24, max_wait_s, max_outstanding=outstanding
    )
    assert isinstance(results, list)
    for at, failure in shown:
        assert at <= failure.attempt_timestamps[0] + max_wait_s + SLACK_S, (at, failure)
        assert at >= failure.attempt_timestamps[0] + max_wait_s - 2 * SLACK_S, (at, failure)
