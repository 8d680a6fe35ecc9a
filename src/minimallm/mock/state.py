"""The mock server's counters and records around its decisions (sans-IO, thread-safe).

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

from minimallm.mock.config import MockServerConfig
from minimallm.mock.decide import Decider, Verdict
from minimallm.mock.faults import Directives
from minimallm.mock.records import Arrival, MockStats, RecordedRequest
from minimallm.mock.timeline import Timeline

__all__ = ["MockState"]


class MockState:
    """Counters, bounded request records and the decisions of one server."""

    __slots__ = (
        "_answers",
        "_arrivals",
        "_changed",
        "_config",
        "_connections_accepted",
        "_decider",
        "_in_flight",
        "_lock",
        "_max_in_flight",
        "_max_queued",
        "_next_conn_id",
        "_open_connections",
        "_outcomes",
        "_phases",
        "_queued",
        "_records",
        "_requests_total",
        "_responder_errors",
        "_started_at",
        "_watchers",
    )

    def __init__(self, config: MockServerConfig) -> None:
        self._config = config
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)  # a gauge changed (see _notify)
        self._watchers = 0  # threads in wait_for: nobody to notify (the usual case) is free
        self._decider = Decider(config, random.Random(config.seed))
        self._records: deque[RecordedRequest] = deque(maxlen=config.max_records)
        self._arrivals: deque[Arrival] = deque(maxlen=config.max_arrivals)
        self._outcomes: Counter[str] = Counter()
        self._phases: dict[str, Counter[str]] = {}
        self._started_at: float | None = None
        self._queued = 0
        self._max_queued = 0
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
            self._notify()
            return self._next_conn_id

    def connection_closed(self) -> None:
        """Count a closed connection."""
        with self._lock:
            self._open_connections -= 1
            self._notify()

    def admit(
        self,
        *,
        now: float,
        method: str,
        path: str,
        headers: dict[str, str],
        body: Any,
        wire_bytes: int,
        conn_id: int,
        fixed_kind: str | None,
        content: str,
        directives: Directives,
    ) -> Verdict:
        """Count one request as in flight, decide its answer, record it.

        ``now`` is the server's clock (seconds) for the decisions; ``fixed_kind`` is an
        outcome already known (an error status, or ``ok`` for a request that is not a
        chat completion), else ``minimallm.mock.decide`` decides. Every admit must be
        paired with ``finished``.
        """
        with self._lock:
            self._requests_total += 1
            self._in_flight += 1
            self._max_in_flight = max(self._max_in_flight, self._in_flight)
            self._notify()
            if fixed_kind is not None:
                verdict = Verdict(fixed_kind)
            else:
                verdict = self._decider.decide(
                    now=now,
                    in_flight=self._in_flight,
                    body=body if isinstance(body, dict) else None,
                    content=content,
                    directives=directives,
                )
            kind = verdict.kind
            self._outcomes[kind] += 1
            stamp = time.monotonic()
            if fixed_kind is None:
                if self._started_at is None:
                    self._started_at = stamp
                self._phase_counter(verdict.phase)[kind] += 1
                if self._config.max_arrivals:
                    self._arrivals.append((stamp, kind))
            if self._config.max_records:
                self._records.append(
                    RecordedRequest(
                        method=method,
                        path=path,
                        headers=headers,
                        body=body,
                        wire_bytes=wire_bytes,
                        received_at=stamp,
                        connection_id=conn_id,
                        outcome=kind,
                        phase=verdict.phase,
                    )
                )
        return verdict

    def _phase_counter(self, label: str) -> Counter[str]:
        counter = self._phases.get(label)
        if counter is None:
            counter = self._phases[label] = Counter()
        return counter

    def queue_entered(self) -> None:
        """A request started waiting for a capacity slot."""
        with self._lock:
            self._queued += 1
            self._max_queued = max(self._max_queued, self._queued)
            self._notify()

    def queue_left(self) -> None:
        """A request stopped waiting for a capacity slot (it got one, or left)."""
        with self._lock:
            self._queued -= 1
            self._notify()

    def connections_reset(self, label: str, count: int) -> None:
        """Count connections an outage (phase ``label``) reset."""
        with self._lock:
            self._phase_counter(label)["connections_reset"] += count

    @property
    def timeline(self) -> Timeline:
        """The configured phases (immutable)."""
        return self._decider.timeline

    def blackholed(self, now: float) -> bool:
        """True while a blackhole outage is active at ``now`` (server clock, seconds)."""
        with self._lock:
            return self._decider.blackholed(now)

    @property
    def origin(self) -> float | None:
        """The server clock's time of the first chat request (phases count from it)."""
        with self._lock:
            return self._decider.origin

    def finished(self) -> None:
        """The request admitted earlier was answered or abandoned."""
        with self._lock:
            self._in_flight -= 1
            self._notify()

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
            self._watchers += 1
            try:
                while not predicate(self._snapshot_locked()):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._changed.wait(remaining)
                return True
            finally:
                self._watchers -= 1

    def _notify(self) -> None:
        """(holding the lock) A gauge changed: wake the threads in :meth:`wait_for`."""
        if self._watchers:
            self._changed.notify_all()

    def _snapshot_locked(self) -> MockStats:
        return MockStats(
            requests_total=self._requests_total,
            in_flight=self._in_flight,
            max_in_flight=self._max_in_flight,
            open_connections=self._open_connections,
            connections_accepted=self._connections_accepted,
            outcomes=dict(self._outcomes),
            responder_errors=self._responder_errors,
            queued=self._queued,
            max_queued=self._max_queued,
            phases={label: dict(c) for label, c in self._phases.items()},
            timeline_started_at=self._started_at,
        )

    def records(self) -> list[RecordedRequest]:
        """The most recent requests, oldest first."""
        with self._lock:
            return list(self._records)

    def arrivals(self) -> list[Arrival]:
        """The most recent chat arrivals ``(time.monotonic(), outcome)``, oldest first
        (at most ``max_arrivals``)."""
        with self._lock:
            return list(self._arrivals)

    def attempts(self, content: str) -> int:
        """Attempts counted for a prompt content carrying a fault directive."""
        with self._lock:
            return self._decider.attempts(content)

    def reset(self) -> None:
        """Forget records, arrivals, counters (per phase too) and fault-sequence
        attempts. Live gauges (``in_flight``, ``queued``, ``open_connections``) keep
        their value; ``max_in_flight`` and ``max_queued`` restart from them. The
        timeline, rate-limit buckets and the random sequence go on."""
        with self._lock:
            self._records.clear()
            self._arrivals.clear()
            self._outcomes.clear()
            self._phases.clear()
            self._decider.clear_sequences()
            self._requests_total = 0
            self._max_in_flight = self._in_flight
            self._max_queued = self._queued
            self._connections_accepted = 0
            self._responder_errors = 0

    def __repr__(self) -> str:
        s = self.snapshot()
        return (
            f"<MockState requests={s.requests_total} in_flight={s.in_flight} "
            f"connections={s.open_connections}>"
        )
