"""A hypothesis state machine over the Limiter's messages and its Workers' moves.

The Limiter is driven wake-up by wake-up (``_react``, what its ``run`` loop does with
each burst of its inbox, without the waiting) by simulated Workers that take permits,
report attempts (overloads, successes, failures, no answer), keep or give back their
permit as a revocation token tells them (or, refused before any success, unasked),
and by time passing. After every step the
invariant of ``actors/limiter.py`` must hold:

- permits in existence (idle in the channel + held by Workers) never exceed the cap;
- a Worker never holds more than one permit, and the Limiter's count is the truth;
- once the Limiter has reacted: existing permits minus revocations under way <= the
  limit (0 while frozen), and 1 <= limit <= cap;
- a Worker is never starved for good: with no overload for a while, permits come back.
"""

from __future__ import annotations

from typing import Any

import trio
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from minimallm._policy.concurrency import ConcurrencyControl
from minimallm.actors.limiter import Limiter, LimiterMessage
from minimallm.actors.messages import AttemptReport
from minimallm.actors.report_inbox import ReportInbox

KINDS = ("ok", "overload", "failed", "unreachable", "timeout", "broken")


class LimiterMachine(RuleBasedStateMachine):
    """Simulated Workers around one real Limiter."""

    limiter: Limiter
    cap: int

    @initialize(cap=st.integers(1, 12))
    def start(self, cap: int) -> None:
        self.cap = cap
        self.now = 1000.0
        inbox = ReportInbox(10_000)  # (reports go straight to _react here)
        self.permits = trio.open_memory_channel[object](cap)
        self.revocations = trio.open_memory_channel[object](cap)
        _jobs_send, self.jobs_recv = trio.open_memory_channel[Any](0)
        self.limiter = Limiter(
            ConcurrencyControl(cap), inbox, self.permits, self.revocations, self.jobs_recv
        )
        self.holding = 0  # Workers holding a permit (each holds at most one)
        self.in_flight: list[float] = []  # send times of the attempts holders are making
        self.pending: list[LimiterMessage] = []
        self.limiter._react([], self.now)

    # -- the Workers ------------------------------------------------------------------

    @rule()
    def a_worker_takes_a_permit(self) -> None:
        try:
            self.permits[1].receive_nowait()
        except trio.WouldBlock:
            return
        self.holding += 1

    @precondition(lambda self: self.holding > len(self.in_flight))
    @rule()
    def a_holder_sends_an_attempt(self) -> None:
        self.in_flight.append(self.now)

    @precondition(lambda self: bool(self.in_flight))
    @rule(kind=st.sampled_from(KINDS), which=st.integers(0, 100), through=st.booleans())
    def an_attempt_ends(self, kind: str, which: int, through: bool = True) -> None:
        """``through``: the Worker got an answer through before; until then a refused
        attempt's permit comes back unasked (see actors/worker.py)."""
        sent_at = self.in_flight.pop(which % len(self.in_flight))
        revoked = self._revoked()
        kept = not revoked and (through or kind != "overload")
        if not kept:
            self.holding -= 1
        report = AttemptReport(sent_at, self.now, kind, kept=kept, unasked=not kept and not revoked)  # type: ignore[arg-type]
        self.pending.append(report)

    def _revoked(self) -> bool:
        try:
            self.revocations[1].receive_nowait()
        except trio.WouldBlock:
            return False
        return True

    # -- the Limiter and the clock ----------------------------------------------------

    @rule(dt=st.sampled_from([0.0, 0.01, 0.1, 0.5, 2.0, 10.0]))
    def time_passes_and_the_limiter_wakes(self, dt: float) -> None:
        self.now += dt
        burst, self.pending = self.pending, []
        self.limiter._react(burst, self.now)
        self._check_after_reacting()

    def _check_after_reacting(self) -> None:
        s = self.limiter.statistics()
        assert 1 <= s.limit <= self.cap, s
        want = 0 if s.frozen else s.limit
        revoking = self.revocations[1].statistics().current_buffer_used
        assert self._existing() - revoking <= want, (s, revoking)

    def _existing(self) -> int:
        return self.holding + self.permits[1].statistics().current_buffer_used

    # -- always -------------------------------------------------------------------------

    @invariant()
    def never_more_permits_than_the_cap(self) -> None:
        if not hasattr(self, "limiter"):
            return
        assert self._existing() <= self.cap
        assert len(self.in_flight) <= self.holding

    @invariant()
    def the_limiters_count_is_the_truth_once_its_inbox_is_read(self) -> None:
        if not hasattr(self, "limiter") or self.pending:
            return
        assert self.limiter.statistics().held == self.holding

    def teardown(self) -> None:
        """Calm for a long while (successes only): the limit is back above zero and
        permits exist for the Workers (nobody is starved for good)."""
        if not hasattr(self, "limiter"):
            return
        for _ in range(40):
            self.a_worker_takes_a_permit()
            while self.holding > len(self.in_flight):
                self.a_holder_sends_an_attempt()
            while self.in_flight:
                self.an_attempt_ends("ok", 0)
            self.time_passes_and_the_limiter_wakes(2.0)
        assert self._existing() >= 1
        assert not self.limiter.statistics().frozen


LimiterMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)
test_the_limiter_keeps_its_invariant = LimiterMachine.TestCase
