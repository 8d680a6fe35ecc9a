"""What the mock server lets a test or benchmark observe: recorded requests and counters."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Arrival", "MockStats", "RecordedRequest"]

Arrival = tuple[float, str]
"""One chat request's arrival: ``(time.monotonic() seconds, outcome)``."""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it.

    ``headers`` keys are lower case; ``body`` is the decoded JSON body (None when the
    body was empty or not JSON); ``wire_bytes`` is the body size on the wire (before
    gzip decoding); ``received_at`` is ``time.monotonic()`` when the request was
    complete (seconds; comparable across threads and processes of this machine);
    ``connection_id`` numbers connections from 1 in accept order; ``outcome`` is what
    the server decided to answer: ``"ok"``, a status such as ``"500"``, a fault kind
    such as ``"reset"``, or ``"capacity"``, ``"ratelimit"``, ``"storm"``,
    ``"blackhole"`` (see ``minimallm.mock.decide``); ``phase`` is the timeline phase
    it arrived in (``"normal"`` outside every phase).
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    wire_bytes: int
    received_at: float
    connection_id: int
    outcome: str
    phase: str = "normal"


def _no_phases() -> Mapping[str, Mapping[str, int]]:
    return {}


@dataclass(frozen=True, slots=True)
class MockStats:
    """A snapshot of the server's counters.

    ``requests_total``: requests received (control endpoints under ``/mock/`` excluded);
    ``in_flight``: requests received but not yet answered (a ``hang`` stays in flight
    until its client goes away; queued requests count); ``max_in_flight``: the highest
    ``in_flight`` seen; ``queued``/``max_queued``: requests waiting for a capacity slot
    (``capacity_mode="queue"``) now and at most; ``open_connections`` /
    ``connections_accepted``: live and ever-accepted TCP connections; ``outcomes``:
    count per outcome (see RecordedRequest.outcome); ``responder_errors``: answers that
    failed because the responder raised; ``phases``: per timeline phase label
    (``"normal"``, ``"outage"``, ``"storm"``, ``"storm-2"`` …) the count of each outcome
    of chat requests that arrived in it, plus ``connections_reset`` for the open
    connections an outage reset; ``timeline_started_at``: ``time.monotonic()`` of the
    first chat request (phase times count from it), None before.
    """

    requests_total: int
    in_flight: int
    max_in_flight: int
    open_connections: int
    connections_accepted: int
    outcomes: Mapping[str, int]
    responder_errors: int
    queued: int = 0
    max_queued: int = 0
    phases: Mapping[str, Mapping[str, int]] = field(default_factory=_no_phases)
    timeline_started_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready form (the ``GET /mock/stats`` body)."""
        return {
            "requests_total": self.requests_total,
            "in_flight": self.in_flight,
            "max_in_flight": self.max_in_flight,
            "open_connections": self.open_connections,
            "connections_accepted": self.connections_accepted,
            "outcomes": dict(self.outcomes),
            "responder_errors": self.responder_errors,
            "queued": self.queued,
            "max_queued": self.max_queued,
            "phases": {k: dict(v) for k, v in self.phases.items()},
            "timeline_started_at": self.timeline_started_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MockStats:
        """Inverse of ``as_dict`` (for stats read over HTTP from a server process)."""
        started = data.get("timeline_started_at")
        return cls(
            requests_total=int(data["requests_total"]),
            in_flight=int(data["in_flight"]),
            max_in_flight=int(data["max_in_flight"]),
            open_connections=int(data["open_connections"]),
            connections_accepted=int(data["connections_accepted"]),
            outcomes={str(k): int(v) for k, v in data["outcomes"].items()},
            responder_errors=int(data["responder_errors"]),
            queued=int(data.get("queued", 0)),
            max_queued=int(data.get("max_queued", 0)),
            phases={
                str(k): {str(o): int(n) for o, n in v.items()}
                for k, v in data.get("phases", {}).items()
            },
            timeline_started_at=None if started is None else float(started),
        )
