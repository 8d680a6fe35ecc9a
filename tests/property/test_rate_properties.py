"""Invariants of the learned rate (``_policy/rate.py``), checked with hypothesis: a
rate limit's learned rate under any mix of refusals, congestion steps, sends and time."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from minimallm._policy.rate import GROWTH_MAX_PER_S, LIMITED_BELOW, RateControl

FAST = settings(max_examples=200, deadline=None)


@st.composite
def histories(draw: st.DrawFn) -> list[tuple[str, float, dict[str, float | bool | int]]]:
    """Events in time order: sends (at a random pace), refusals (below the concurrency
    or not), congestion steps (depth up and back to calm, with what the server
    delivered meanwhile and how steady its latency is) and ticks."""
    rng = random.Random(draw(st.integers(0, 2**32)))
    n = draw(st.integers(1, 600))
    pace = draw(st.sampled_from([5.0, 50.0, 200.0, 1000.0]))
    now = draw(st.floats(0.0, 1e5))
    depth = 0
    events: list[tuple[str, float, dict[str, float | bool | int]]] = []
    for _ in range(n):
        now += rng.expovariate(pace)
        x = rng.random()
        if x < 0.6:
            events.append(("send", now, {}))
        elif x < 0.8:
            events.append(("refusal", now, {"sent_at": now - rng.random() / 5,
                                            "below": rng.random() < 0.3}))  # fmt: skip
        elif x < 0.9:
            depth = 0 if rng.random() < 0.2 else depth + 1
            delivered = rng.choice([0.0, 1.0, pace / 2, pace])
            events.append(("step", now, {
                "depth": depth, "floor_depth": 0 if rng.random() < 0.8 else 1,
                "delivered_per_s": delivered, "during_per_s": rng.choice([0.0, delivered]),
                "rttvar_s": rng.choice([0.0, 0.05]), "srtt_s": 0.1,
            }))  # fmt: skip
        else:
            events.append(("tick", now, {}))
    return events


@FAST
@given(events=histories())
def test_a_limited_rate_only_falls_at_refusals_and_grows_boundedly(
    events: list[tuple[str, float, dict[str, float | bool | int]]],
) -> None:
    rc = RateControl()
    last_tick = events[0][1]
    for kind, now, kw in events:
        before = rc.rate(now)
        if kind == "send":
            rc.on_send(now)
        elif kind == "refusal":
            rc.on_refusal(now, float(kw["sent_at"]), below=bool(kw["below"]))
            after = rc.rate(now)
            # a refusal never raises the pace, and never drops it below the floor
            assert after is None or (before is not None and after <= before)
        elif kind == "step":
            floor_depth = int(kw["floor_depth"])
            delivered = float(kw["delivered_per_s"])
            rc.on_congestion(
                now,
                floor_depth,
                depth=int(kw["depth"]),
                delivered_per_s=delivered,
                baseline_per_s=0.0,
                srtt_s=0.1,
                during_per_s=float(kw["during_per_s"]),
                rttvar_s=float(kw["rttvar_s"]),
            )
            after = rc.rate(now)
            if after is not None and (before is None or after < before) and not floor_depth:
                # a rate limit's rate is cut to under what the server delivered (at
                # least the floor: 0.5 a second)
                most = LIMITED_BELOW * max(delivered, float(kw["during_per_s"]))
                assert after <= max(0.5, most) + 1e-9
        else:
            rc.tick(now)
            after = rc.rate(now)
            if before is not None and after is not None:
                # per round trip: doubling back towards the threshold at most, else the
                # gentle growth (2 % a round trip for a rate learned at the floor)
                dt = max(now - last_tick, 1.0)
                assert after <= max(2.0 * before, before * (1 + GROWTH_MAX_PER_S * dt) * 1.02)
            last_tick = now
        rate = rc.rate(now)
        assert rate is None or rate >= 0.5  # min_rate
