"""Configuration, responders and the observable records of the mock server."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from minimallm._errors import ConfigError
from minimallm.mock.faults import DirectiveError, FaultRoller

__all__ = [
    "MockServerConfig",
    "MockStats",
    "RecordedRequest",
    "Responder",
    "echo_responder",
    "last_message_text",
]

Responder = Callable[[dict[str, Any]], str]
"""Makes the assistant text from the parsed JSON body of a chat-completion request."""


def last_message_text(body: Mapping[str, Any]) -> str:
    """The text of the last message of a chat request.

    A string content is returned as is; a list of content parts (OpenAI's multi-part
    form) is joined from its ``text`` parts; anything else gives "". Raises ValueError
    when ``messages`` is missing, empty, or its last element is not an object.
    """
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ValueError("'messages' must be a non-empty array")
    last = messages[-1]
    if not isinstance(last, dict):
        raise ValueError("each message must be an object")
    content = last.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def echo_responder(body: dict[str, Any]) -> str:
    """The default answer, ``"echo: " + <content of the last message>``, so a test can
    tell which request each answer belongs to."""
    return "echo: " + last_message_text(body)


def _frozen_rates() -> Mapping[str, float]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class MockServerConfig:
    """How the mock server behaves. Immutable; make a new one to change a setting.

    - ``host``/``port``: where to listen (port 0: any free port, read it back from the
      server's ``base_url``).
    - ``model``: the model id listed by ``GET /v1/models`` and answered when a request
      names none.
    - ``latency_s``: fixed delay before each chat answer (seconds); ``latency_jitter_s``
      adds a uniform random extra in ``[0, latency_jitter_s]`` (seconds).
    - ``capacity``: more chat requests in flight than this are answered 429 at once
      (None: no limit), with ``Retry-After: retry_after_s`` (seconds, may be fractional).
    - ``fault_rates``: kind -> probability per request of a random fault (see
      ``minimallm.mock.faults`` for the kinds); ``seed`` seeds jitter and faults
      (None: unseeded).
    - ``responder``: makes the answer text from the parsed body (default: echo).
    - ``max_records``: how many recent requests ``requests`` keeps.
    - ``deterministic``: answers carry ``created: 0`` and an id derived from the
      request, so the same request always gets the same bytes.
    """

    host: str = "127.0.0.1"
    port: int = 0
    model: str = "mock-model"
    latency_s: float = 0.0
    latency_jitter_s: float = 0.0
    capacity: int | None = None
    retry_after_s: float = 1.0
    fault_rates: Mapping[str, float] = field(default_factory=_frozen_rates)
    seed: int | None = 0
    responder: Responder = echo_responder
    max_records: int = 10_000
    deterministic: bool = False

    def __post_init__(self) -> None:
        problems: list[str] = []

        def seconds(name: str, value: float) -> None:
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                problems.append(f"{name}={value!r} must be a finite number of seconds >= 0")

        seconds("latency_s", self.latency_s)
        seconds("latency_jitter_s", self.latency_jitter_s)
        seconds("retry_after_s", self.retry_after_s)
        if not 0 <= self.port <= 65535:
            problems.append(f"port={self.port!r} must be within 0..65535")
        if self.capacity is not None and self.capacity < 1:
            problems.append(f"capacity={self.capacity!r} must be >= 1 or None")
        if self.max_records < 0:
            problems.append(f"max_records={self.max_records!r} must be >= 0")
        rates = {str(k): float(v) for k, v in self.fault_rates.items()}
        try:
            FaultRoller(rates)
        except DirectiveError as exc:
            problems.append(f"fault_rates: {exc}")
        if problems:
            raise ConfigError("invalid MockServerConfig: " + "; ".join(problems))
        object.__setattr__(self, "fault_rates", MappingProxyType(rates))


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One request as the server received it.

    ``headers`` keys are lower case; ``body`` is the decoded JSON body (None when the
    body was empty or not JSON); ``wire_bytes`` is the body size on the wire (before
    gzip decoding); ``received_at`` is ``time.monotonic()`` when the request was
    complete (seconds; comparable across threads and processes of this machine);
    ``connection_id`` numbers connections from 1 in accept order; ``outcome`` is what
    the server decided to answer: ``"ok"``, a status such as ``"500"``, a fault kind
    such as ``"reset"``, or ``"capacity"`` for a 429 from the capacity limit.
    """

    method: str
    path: str
    headers: Mapping[str, str]
    body: Any
    wire_bytes: int
    received_at: float
    connection_id: int
    outcome: str


@dataclass(frozen=True, slots=True)
class MockStats:
    """A snapshot of the server's counters.

    ``requests_total``: requests received (control endpoints under ``/mock/`` excluded);
    ``in_flight``: requests received but not yet answered (a ``hang`` stays in flight
    until its client goes away); ``max_in_flight``: the highest ``in_flight`` seen;
    ``open_connections`` / ``connections_accepted``: live and ever-accepted TCP
    connections; ``outcomes``: count per outcome (see RecordedRequest.outcome);
    ``responder_errors``: answers that failed because the responder raised.
    """

    requests_total: int
    in_flight: int
    max_in_flight: int
    open_connections: int
    connections_accepted: int
    outcomes: Mapping[str, int]
    responder_errors: int

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
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> MockStats:
        """Inverse of ``as_dict`` (for stats read over HTTP from a server process)."""
        return cls(
            requests_total=int(data["requests_total"]),
            in_flight=int(data["in_flight"]),
            max_in_flight=int(data["max_in_flight"]),
            open_connections=int(data["open_connections"]),
            connections_accepted=int(data["connections_accepted"]),
            outcomes={str(k): int(v) for k, v in data["outcomes"].items()},
            responder_errors=int(data["responder_errors"]),
        )
