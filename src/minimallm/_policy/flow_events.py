"""The two events :class:`~minimallm._policy.flow.FlowWatch` tells the other
controllers: a step of congestion or its end (:class:`CongestionEvent`), and a server
that stopped or started answering (:class:`ReachEvent`). Both are imported through
:mod:`minimallm._policy.flow` too."""

from __future__ import annotations

from typing import NamedTuple

__all__ = ["CongestionEvent", "ReachEvent"]


class CongestionEvent(NamedTuple):
    """The congestion episode changed at ``at``: ``depth`` steps so far (0: calm), of
    which ``floor_depth`` came while the concurrency limit was already down to 1 (so
    fewer attempts at once could not help: the rate, then a pause, must); with
    ``independent``, it ended because backing off did not lower the refusals."""

    at: float
    depth: int
    floor_depth: int
    delivered_per_s: float
    baseline_per_s: float
    srtt_s: float | None
    independent: bool = False
    """The episode ended because its refusals do not depend on the load."""
    limit_before: int = 0
    """The concurrency limit when the episode began."""
    during_per_s: float = 0.0
    """Successes per second among the attempts sent since the episode's first step::

        during_per_s = successes of those attempts / (now - first step - srtt)

    (0 until a round trip has passed since the step): what the server sustains while
    refusing."""
    rttvar_s: float = 0.0
    """How much the latency of successes varies (seconds)."""


class ReachEvent(NamedTuple):
    """At ``at`` the server looked gone (``reachable`` False: attempts in a row found no
    server) or answered again (True)."""

    at: float
    reachable: bool
