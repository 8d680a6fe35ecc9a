"""Which limit binds, in words."""

from __future__ import annotations

from typing import Any

import pytest

from minimallm._policy import Binding, binding

IDLE: dict[str, Any] = {
    "now": 100.0,
    "held": None,
    "held_until": None,
    "outage_since": None,
    "slot_waiting": 0,
    "rate_per_s": None,
    "rate_source": None,
    "rpm": 600,
    "permit_waiting": 0,
    "limit": 32,
    "cap": 32,
    "callers_waiting": 0,
}


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({}, None),
        (
            {"held": "outage", "outage_since": 88.0},
            Binding("outage", "outage: no server for 12s, probing"),
        ),
        ({"held": "cooldown", "held_until": 104.25}, Binding("cooldown", "cooldown 4.2s left")),
        (
            {"slot_waiting": 3, "rate_per_s": 10.0, "rate_source": "rpm"},
            Binding("rpm", "RPM cap 600/min"),
        ),
        (
            {"slot_waiting": 3, "rate_per_s": 3.2, "rate_source": "headers"},
            Binding("server-rate", "server rate ~3.2/s (its headers)"),
        ),
        (
            {"slot_waiting": 1, "rate_per_s": 0.5, "rate_source": "learned"},
            Binding("server-rate", "server rate ~30.0/min (learned)"),
        ),
        ({"permit_waiting": 5}, Binding("max-outstanding", "MAX_OUTSTANDING 32")),
        ({"callers_waiting": 9}, Binding("max-outstanding", "MAX_OUTSTANDING 32")),
        (
            {"permit_waiting": 5, "limit": 12},
            Binding("server-concurrency", "server concurrency ~12 (learned)"),
        ),
        # a queueing server: its answers' latency rose with the load
        (
            {"callers_waiting": 9, "fast_s": 0.8, "first_fast_s": 0.1},
            Binding("server-queue", "server's queue: latency 0.80s, 0.10s at first"),
        ),
        (
            {
                "slot_waiting": 2,
                "rate_per_s": 10.0,
                "rate_source": "rpm",
                "fast_s": 16.0,
                "first_fast_s": 2.0,
            },
            Binding("server-queue", "server's queue: latency 16s, 2.0s at first"),
        ),
        (  # a server that tells its rate binds by that, whatever its latency
            {
                "slot_waiting": 3,
                "rate_per_s": 3.2,
                "rate_source": "headers",
                "fast_s": 0.8,
                "first_fast_s": 0.1,
            },
            Binding("server-rate", "server rate ~3.2/s (its headers)"),
        ),
        (  # latency as at first: the RPM cap, not the server, holds the client back
            {
                "slot_waiting": 3,
                "rate_per_s": 10.0,
                "rate_source": "rpm",
                "fast_s": 0.15,
                "first_fast_s": 0.1,
            },
            Binding("rpm", "RPM cap 600/min"),
        ),
        (  # a rise of milliseconds is noise, not a queue
            {"permit_waiting": 5, "fast_s": 0.004, "first_fast_s": 0.001},
            Binding("max-outstanding", "MAX_OUTSTANDING 32"),
        ),
        ({"fast_s": 0.8, "first_fast_s": 0.1}, None),  # nothing waits: nothing binds
    ],
)
def test_binding(changes: dict[str, Any], expected: Binding | None) -> None:
    assert binding(**{**IDLE, **changes}) == expected


def test_a_long_hold_says_until_when_and_what_the_server_asked() -> None:
    import time

    b = binding(**{**IDLE, "held": "cooldown", "held_until": 130.0}, now_wall=1e9, asked_s=120.0)
    until = time.strftime("%H:%M:%S", time.localtime(1e9 + 30.0))
    assert b == Binding(
        "cooldown", f"cooldown 30.0s left (until {until}), server asked 2 min (Retry-After)"
    )
    short = binding(**{**IDLE, "held": "cooldown", "held_until": 101.0}, now_wall=1e9)
    assert short == Binding("cooldown", "cooldown 1.0s left")  # a short wait: no clock
