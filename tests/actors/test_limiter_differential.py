"""The Limiter decides as it did before its fast path for successes (``_react`` ->
``ConcurrencyControl.on_success`` and ``FlowWatch.observe_success``): the same limits,
freezes, events and statistics, for any sequence of reports.

Each example simulates Workers around a Limiter wake-up by wake-up, as
``tests/property/test_limiter_machine.py`` does, through phases of a server's life
(calm, a storm of refusals, refusals that do not depend on the load, an outage,
timeouts in a busy queue), once with the Limiter of ``src/`` and once with a frozen
copy of it as it was (``limiter_oracle/``), from the same seed. Every Worker's move
is drawn from that seed, so the two runs see the same reports for as long as they
decide alike. After every wake-up the whole state is compared: statistics, the
controller's, the signal's and the flow watch's every field, the permits, and what
was told to the Pacer and the Cooldown.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from actors.limiter_oracle.concurrency import ConcurrencyControl as OracleControl
from actors.limiter_oracle.congestion import OverloadSignal as OracleSignal
from actors.limiter_oracle.flow import FlowWatch as OracleWatch
from actors.limiter_oracle.limiter import Limiter as OracleLimiter
from fakes import drain
from minimallm._policy.concurrency import ConcurrencyControl
from minimallm.actors.limiter import Limiter
from minimallm.actors.messages import AttemptReport

# per phase: weights of ok, overload (status 429 / 503 with Retry-After), gateway gone
# (502 / 503 without Retry-After), failed, unreachable, timeout
PHASES: dict[str, tuple[int, int, int, int, int, int]] = {
    "calm": (97, 2, 0, 1, 0, 0),
    "storm": (8, 90, 2, 0, 0, 0),
    "flaky": (55, 45, 0, 0, 0, 0),
    "outage": (0, 0, 30, 0, 40, 30),
    "queue": (70, 0, 0, 0, 0, 30),
    "mixed": (40, 20, 10, 10, 10, 10),
}
OUTCOMES = ("ok", "overload", "gone", "failed", "unreachable", "timeout")
STEPS = (0.0, 0.0, 0.0002, 0.001, 0.005, 0.02, 0.1, 0.4, 1.5)


@dataclass
class Scenario:
    cap: int
    workers: int
    seed: int
    phases: list[tuple[str, int]]
    assume_answered: bool
    pacer: bool
    burst_max: int


@dataclass
class Run:
    """One Limiter and its simulated Workers."""

    limiter: Any
    inbox: trio.MemorySendChannel[Any]
    permits: tuple[trio.MemorySendChannel[object], trio.MemoryReceiveChannel[object]]
    revocations: tuple[trio.MemorySendChannel[object], trio.MemoryReceiveChannel[object]]
    told: trio.MemoryReceiveChannel[Any]
    refusals: trio.MemoryReceiveChannel[Any]
    holding: int = 0
    in_flight: list[float] = field(default_factory=list)


def _start(new: bool, s: Scenario) -> Run:
    inbox_send, inbox_recv = trio.open_memory_channel[Any](1)
    permits = trio.open_memory_channel[object](s.cap)
    revocations = trio.open_memory_channel[object](s.cap)
    told_send, told = trio.open_memory_channel[Any](100_000)
    pacer_send, refusals = trio.open_memory_channel[Any](100_000)
    run: Run
    jobs = SimpleNamespace(statistics=lambda: SimpleNamespace(tasks_waiting_receive=_idle(run)))
    control = ConcurrencyControl(s.cap) if new else OracleControl(s.cap, signal=OracleSignal())
    limiter = (Limiter if new else OracleLimiter)(
        control,  # type: ignore[arg-type]
        inbox_recv,
        permits,
        revocations,
        jobs,
        (told_send,),
        assume_answered=s.assume_answered,
        slot_waiters=lambda: _idle(run) // 2,
        pacer=pacer_send if s.pacer else None,
    )
    run = Run(limiter, inbox_send, permits, revocations, told, refusals)
    return run


def _idle(run: Run) -> int:
    """Workers holding a permit, not making an attempt (waiting for a job)."""
    return run.holding - len(run.in_flight)


def _snapshot(run: Run) -> dict[str, Any]:
    lim = run.limiter
    state: dict[str, Any] = {"statistics": tuple(lim.statistics())}
    for name, obj, cls in (
        ("control", lim._control, OracleControl),
        ("signal", lim._control.signal, OracleSignal),
        ("watch", lim._watch, OracleWatch),
    ):
        for slot in cls.__slots__:
            if slot == "signal":
                continue
            value = getattr(obj, slot)
            state[f"{name}.{slot}"] = tuple(value) if hasattr(value, "maxlen") else value
    state["existing"] = lim._existing
    state["revoking"] = lim._revoking
    state["idle"] = run.permits[1].statistics().current_buffer_used
    state["tokens"] = run.revocations[1].statistics().current_buffer_used
    state["told"] = [(type(e).__name__, tuple(e)) for e in drain(run.told)]
    state["refused"] = [tuple(r) for r in drain(run.refusals)]
    state["wake_at"] = lim._control.wake_at()
    return state


def _report(rng: random.Random, run: Run, now: float, outcome: str) -> AttemptReport:
    """One of the attempts out ends with ``outcome``; its Worker keeps its permit, or
    gives it back as a revocation token says (or unasked: refused before any answer
    got through)."""
    worker = rng.randrange(len(run.in_flight))
    sent_at = run.in_flight.pop(worker)
    kind = "overload" if outcome == "gone" else outcome
    if outcome == "gone":
        status, retry_after = rng.choice(((502, None), (504, None), (503, None)))
    elif outcome == "overload":
        status, retry_after = rng.choice(((429, None), (429, 1.0), (503, 2.0)))
    else:
        status, retry_after = (500, None) if kind == "failed" else (None, None)
    try:
        run.revocations[1].receive_nowait()
        revoked = True
    except trio.WouldBlock:
        revoked = False
    through = rng.random() < 0.7  # its Worker got an answer through before
    kept = not revoked and (through or kind != "overload")
    done_at = max(sent_at, now - rng.choice((0.0, 0.0, 0.0, 0.0005)))
    if not kept:
        run.holding -= 1
    elif rng.random() < 0.8:  # its Worker sends its next job at once (the limit binds)
        run.in_flight.append(done_at)
    return AttemptReport(
        sent_at,
        done_at,
        kind,  # type: ignore[arg-type]
        retry_after_s=retry_after,
        kept=kept,
        status=status,
        unasked=not kept and not revoked,
    )


def _trace(new: bool, s: Scenario) -> list[dict[str, Any]]:
    """Run the scenario; the state after every wake-up."""
    rng = random.Random(s.seed)
    run = _start(new, s)
    now = 1000.0
    run.limiter._react([], now)
    states = [_snapshot(run)]
    for phase, reports in s.phases:
        weights = PHASES[phase]
        left = reports
        while left > 0:
            while run.holding < s.workers:  # Workers take the permits there are
                try:
                    run.permits[1].receive_nowait()
                except trio.WouldBlock:
                    break
                run.holding += 1
            while len(run.in_flight) < run.holding and rng.random() < 0.9:
                run.in_flight.append(now)
            now += rng.choice(STEPS)
            burst = []
            for _ in range(rng.randint(0, s.burst_max)):
                if not run.in_flight:
                    break
                outcome = rng.choices(OUTCOMES, weights)[0]
                burst.append(_report(rng, run, now, outcome))
                now += rng.choice(STEPS[:4])
            left -= max(1, len(burst))
            run.limiter._react(burst, now)
            states.append(_snapshot(run))
    return states


@st.composite
def scenarios(draw: st.DrawFn) -> Scenario:
    cap = draw(st.sampled_from((1, 2, 3, 5, 8, 16, 32, 64)))
    return Scenario(
        cap=cap,
        workers=cap + draw(st.integers(0, 3)),
        seed=draw(st.integers(0, 2**32)),
        phases=draw(
            st.lists(st.tuples(st.sampled_from(sorted(PHASES)), st.integers(1, 300)), max_size=6)
        ),
        assume_answered=draw(st.booleans()),
        pacer=draw(st.booleans()),
        burst_max=draw(st.sampled_from((1, 4, 12, 32))),
    )


@settings(max_examples=150, deadline=None)
@given(scenarios())
def test_the_limiter_decides_as_before(s: Scenario) -> None:
    new, old = _trace(True, s), _trace(False, s)
    for step, (mine, theirs) in enumerate(zip(new, old, strict=True)):
        assert mine == theirs, f"after wake-up {step}"


def test_the_scenarios_reach_every_path() -> None:
    """The phases do what they are for: episodes, refusals judged independent of the
    load, outages and busy timeouts all happen (else the comparison proves little)."""
    seen: set[str] = set()
    life = [("calm", 300), ("storm", 200), ("flaky", 600), ("calm", 200), ("outage", 100)]
    life += [("calm", 100), ("queue", 300)]
    for seed in range(8):
        for state in _trace(True, Scenario(16, 17, seed, life, seed % 2 == 0, True, 12)):
            for name, event in state["told"]:
                seen.add(name)
                if name == "CongestionEvent" and event[6]:
                    seen.add("independent")
            if state["statistics"][6]:
                seen.add("frozen")
            if state["refused"]:
                seen.add("refused")
            if state["control.decreases"]:
                seen.add("decreased")
    wanted = {"CongestionEvent", "ReachEvent", "independent", "frozen", "refused", "decreased"}
    assert seen >= wanted, seen
