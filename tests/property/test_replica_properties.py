"""Routing invariants over replicas of unequal size, one of which goes down at a random
moment for a random time (virtual time, hypothesis): no request fails while another
replica is up, whatever MAX_ATTEMPTS, whether the replica refuses connections or
answers nothing (a blackhole: attempts time out); no replica sees more than
MAX_OUTSTANDING attempts at once; a replica found down gets only probes until it
returns."""

from __future__ import annotations

import math

from hypothesis import Phase, example, given, settings
from hypothesis import strategies as st

from minimallm import MinimaLlmFailure
from replicas import Replica, run

PROBE_GAP_S = 0.5  # the first probe interval (BASE_BACKOFF_S), doubling to 2 s


@settings(max_examples=12, deadline=None, phases=[Phase.explicit, Phase.generate])
@given(
    slots=st.lists(st.integers(min_value=2, max_value=24), min_size=2, max_size=3),
    down_at=st.floats(min_value=0.0, max_value=3.0),
    down_for=st.one_of(st.floats(min_value=0.5, max_value=8.0), st.just(math.inf)),
    which=st.integers(min_value=0, max_value=2),
    max_attempts=st.sampled_from([1, 2, 6]),
    seed=st.integers(min_value=0, max_value=1000),
    blackhole=st.booleans(),
)
@example(  # r269's third attempt timed out: two counted, one blackhole timeout not excused
    slots=[11, 12],
    down_at=2.1959306737266795,
    down_for=math.inf,
    which=1,
    max_attempts=2,
    seed=138,
    blackhole=True,
)
def test_one_replica_down_costs_no_request_and_gets_only_probes(
    slots: list[int],
    down_at: float,
    down_for: float,
    which: int,
    max_attempts: int,
    seed: int,
    blackhole: bool,
) -> None:
    which %= len(slots)
    if blackhole:
        # an attempt caught in a blackhole that ends before TIMEOUT_S, while attempts
        # sent after it are answered, looks like a request too long for TIMEOUT_S: it
        # counts once (it cannot be told from one); a second attempt then succeeds
        max_attempts = max(max_attempts, 2)
    down = (down_at, down_at + down_for)
    replicas = [
        Replica(s, seed=seed + i, down=down if i == which else None, blackhole=blackhole)
        for i, s in enumerate(slots)
    ]
    results, wall, _stats = run(
        replicas, 400, max_attempts=max_attempts, max_outstanding=16, timeout_s=2.0
    )
    failures = [r for r in results if isinstance(r, MinimaLlmFailure)]
    assert failures == [], failures[:1]
    assert all(r.peak <= 16 for r in replicas), [r.peak for r in replicas]
    fallen = replicas[which]
    refused = [t for t, kind in fallen.log if kind in ("refused", "blackholed")]
    if refused:
        # noticed within a round trip (or TIMEOUT_S) of the first; then probes only
        settled = refused[0] + (2.5 if blackhole else 1.0)
        later = [t for t in refused if t >= settled]
        span = max(0.0, min(wall, down[1]) - settled)
        assert len(later) <= span / PROBE_GAP_S + 2, (len(later), wall)
