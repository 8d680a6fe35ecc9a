"""The mock server's counters, records and outcome decisions (sans-IO, thread-safe).

Everything here is guarded by one lock, taken once per request on arrival and once on
completion, so another thread may read ``stats``/``requests`` or call ``reset()`` while
the server runs.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from typing import Any

from minimallm.mock.config import MockServerConfig, MockStats, RecordedRequest
from minimallm.mock.faults import Directives, FaultRoller, FaultSequences

__all__ = ["CAPACITY", "MockState"]

CAPACITY = "capacity"
"""The outcome of a request refused with 429 by the capacity limit."""


class MockState:
    """Counters, bounded request records and fault decisions of one server."""

    __slots__ = (
        "_answers",
        "_changed",
        "_config",
        "_connections_accepted",
        "_in_flight",
        "_lock",
        "_max_in_flight",
        "_next_conn_id",
        "_open_connections",
        "_outcomes",
        "_records",
        "_requests_total",
        "_responder_errors",
        "_rng",
        "_roller",
        "_sequences",
    )

    def __init__(self, config: MockServerConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # notified on every gauge change
        self._rng = random.Random(config.seed)
        self._roller = FaultRoller(config.fault_rates)
        self._sequences = FaultSequences()
        self._records: deque[RecordedRequest] = deque(maxlen=config.max_records)
        self._outcomes: Counter[str] = Counter()
        self._requests_total = 0
        self._in_flight = 0
        self._max_in_flight = 0
        self._open_connections = 0
        self._connections_accepted = 0
        self._next_conn_id = 0
        self._responder_errors = 0
        self._answers = 0

    # --- called by the server ----------------------------------------------------

    def connection_opened(self) -> int:
        """Count an accepted connection; return its id (1, 2, … never reused)."""
        with self._lock:
            self._open_connections += 1
            self._connections_accepted += 1
            self._next_conn_id += 1
            self._changed.notify_all()
            return self._next_conn_id

    def connection_closed(self) -> None:
        """Count a closed connection."""
        with self._lock:
            self._open_connections -= 1
            self._changed.notify_all()

    def admit(
        self,
        *,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        wire_bytes: int,
        conn_id: int,
        fixed_kind: str | None,
        content: str,
        directives: Directives,
    ) -> tuple[str, float]:
        """Count one request as in flight, decide its outcome, record it.

        ``fixed_kind`` is an outcome already known (an error status, or ``ok`` for a
        request that is not a chat completion); otherwise the capacity limit, then the
        prompt's fault sequence, then the random fault rates decide. Returns
        ``(outcome, latency in seconds)``. Every admit must be paired with ``finished``.
        """
        cfg = self._config
        with self._lock:
            self._requests_total += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._changed.notify_all()
            latency = 0.0
            if fixed_kind is not None:
                kind = fixed_kind
            elif cfg.capacity is not None and self._in_flight > cfg.capacity:
                kind = CAPACITY
            else:
                if directives.faults:
                    kind = self._sequences.next_kind(content, directives.faults)
                else:
                    kind = self._roller.roll(self._rng)
                if directives.latency_s is not None:
                    latency = directives.latency_s
                else:
                    latency = cfg.latency_s
                    if cfg.latency_jitter_s > 0:
                        latency += self._rng.uniform(0.0, cfg.latency_jitter_s)
            self._outcomes[kind] += 1
            if cfg.max_records:
                self._records.append(
                    RecordedRequest(
                        method=method,
                        path=path,
                        headers=headers,
                        body=body,
                        wire_bytes=wire_bytes,
                        received_at=time.monotonic(),
                        connection_id=conn_id,
                        outcome=kind,
                    )
                )
        return kind, latency

    def finished(self) -> None:
        """The request admitted earlier was answered or abandoned."""
        with self._lock:
            self._in_flight -= 1
            self._changed.notify_all()

    def next_answer_number(self) -> int:
        """A fresh number for a completion id."""
        with self._lock:
            self._answers += 1
            return self._answers

    def responder_failed(self) -> None:
        """Count a responder that raised."""
        with self._lock:
            self._responder_errors += 1

    # --- read from anywhere ------------------------------------------------------

    def snapshot(self) -> MockStats:
        """A consistent copy of the counters."""
        with self._lock:
            return self._snapshot_locked()

    def wait_for(self, predicate: Callable[[MockStats], bool], timeout_s: float) -> bool:
        """Block until ``predicate(stats)`` holds (True) or ``timeout_s`` seconds pass
        (False): tests wait for what the server thread does without polling."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while not predicate(self._snapshot_locked()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True

    def _snapshot_locked(self) -> MockStats:
        return MockStats(
            requests_total=self._requests_total,
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            open_connections=self._open_connections,
            connections_accepted=self._connections_accepted,
            outcomes=dict(self._outcomes),
            responder_errors=self._responder_errors,
        )

    def records(self) -> list[RecordedRequest]:
        """The most recent requests, oldest first."""
        with self._lock:
            return list(self._records)

    def attempts(self, content: str) -> int:
        """Attempts counted for a prompt content carrying a fault directive."""
        with self._lock:
            return self._sequences.attempts(content)

    def reset(self) -> None:
        """Forget records, counters and fault-sequence attempts. Live gauges
        (``in_flight``, ``open_connections``) keep their value; ``max_in_flight``
        restarts from the current ``in_flight``."""
        with self._lock:
            self._records.clear()
            self._outcomes.clear()
            self._sequences.clear()
            self._requests_total = 0
            self._max_in_flight = self._in_flight
            self._connections_accepted = 0
            self._responder_errors = 0

    def __repr__(self) -> str:
        s = self.snapshot()
        return (
            f"<MockState requests={s.requests_total} in_flight={s.in_flight} "
            f"connections={s.open_connections}>"
        )
