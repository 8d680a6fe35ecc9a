"""Which limit holds the client back now, in words a progress line can show.

Pure: the caller passes the actors' statistics in (plain values) and ``now``.
Checked in order, the first that applies binds:

==================  ==========================================================
held by the Pacer   ``outage`` (no server: probing) or ``cooldown`` (N s left)
Workers wait for    ``server-rate`` (learned from the server's headers or its
a send slot         overload answers)
anything waits,     ``server-queue``: a queueing server (llama.cpp, vLLM: never
latency rose        refuses, latency rises with load); more outstanding would
                    only wait longer in its queue
Workers wait for    ``rpm`` (the RPM cap)
a send slot
Workers wait for    ``max-outstanding`` (the cap) or ``server-concurrency``
a permit            (the limit learned from the server)
callers wait for    ``max-outstanding``: every Worker is busy
a Worker
==================  ==========================================================

*Latency rose* compares the fastest tenth of the recent answers' latencies
(``fast_s``) with that of the run's first answers (``first_fast_s``, sent before any
queue could form): ``QUEUE_RISE`` times as slow, and at least ``QUEUE_MIN_S`` slower.
The fastest tenth, not the median: a server whose latencies merely vary keeps it where
it was, while in a queue even the luckiest answer waits its turn.

Nothing waiting: nothing binds; the pace is the server's latency.
"""

from __future__ import annotations

import time
from typing import Literal, NamedTuple

from minimallm._policy.retrying import describe_wait

__all__ = ["LONG_WAIT_S", "QUEUE_MIN_S", "QUEUE_RISE", "Binding", "binding"]

LONG_WAIT_S = 3.0
"""A hold at least this long (seconds) says until when it lasts."""
QUEUE_RISE = 2.0
"""The fastest answers this many times slower than at first: the server queues."""
QUEUE_MIN_S = 0.05
"""...and at least this much slower (seconds): a rise of milliseconds is noise."""

Limit = Literal[
    "outage",
    "cooldown",
    "rpm",
    "server-rate",
    "server-queue",
    "max-outstanding",
    "server-concurrency",
]


class Binding(NamedTuple):
    """The limit that holds the client back (``limit``) and a short description."""

    limit: Limit
    text: str


def binding(
    *,
    now: float,
    held: str | None,
    held_until: float | None,
    outage_since: float | None,
    slot_waiting: int,
    rate_per_s: float | None,
    rate_source: str | None,
    rpm: int,
    permit_waiting: int,
    limit: int,
    cap: int,
    callers_waiting: int,
    now_wall: float | None = None,
    asked_s: float | None = None,
    fast_s: float | None = None,
    first_fast_s: float | None = None,
) -> Binding | None:
    """What binds now (see the module docstring); None when nothing does. A hold with
    ``LONG_WAIT_S`` or more left says until when (wall clock, from ``now_wall``), and
    the server's Retry-After that set it (``asked_s``), so no long wait is silent.
    ``fast_s``/``first_fast_s``: the fastest tenth of the answers' latencies lately
    and at first (seconds; None: not known yet)."""
    if held == "outage":
        since = "" if outage_since is None else f" for {max(0.0, now - outage_since):.0f}s"
        return Binding("outage", f"outage: no server{since}, probing")
    if held == "cooldown":
        left = 0.0 if held_until is None else max(0.0, held_until - now)
        text = f"cooldown {left:.1f}s left"
        if left >= LONG_WAIT_S and now_wall is not None:
            text += f" (until {time.strftime('%H:%M:%S', time.localtime(now_wall + left))})"
        if asked_s is not None:
            text += f", server asked {describe_wait(asked_s)} (Retry-After)"
        return Binding("cooldown", text)
    if slot_waiting and rate_source in ("headers", "learned") and rate_per_s is not None:
        how = "its headers" if rate_source == "headers" else "learned"
        return Binding("server-rate", f"server rate ~{_rate(rate_per_s)} ({how})")
    if (
        (slot_waiting or permit_waiting or callers_waiting)
        and fast_s is not None
        and first_fast_s is not None
        and fast_s >= QUEUE_RISE * first_fast_s
        and fast_s - first_fast_s >= QUEUE_MIN_S
    ):
        return Binding(
            "server-queue",
            f"server's queue: latency {_secs(fast_s)}, {_secs(first_fast_s)} at first",
        )
    if slot_waiting:
        return Binding("rpm", f"RPM cap {rpm}/min")
    if permit_waiting or callers_waiting:
        if limit < cap:
            return Binding("server-concurrency", f"server concurrency ~{limit} (learned)")
        return Binding("max-outstanding", f"MAX_OUTSTANDING {cap}")
    return None


def _secs(s: float) -> str:
    return f"{s:.0f}s" if s >= 10 else f"{s:.1f}s" if s >= 1 else f"{s:.2f}s"


def _rate(per_s: float) -> str:
    if per_s >= 10:
        return f"{per_s:.0f}/s"
    if per_s >= 1:
        return f"{per_s:.1f}/s"
    return f"{per_s * 60:.1f}/min"
