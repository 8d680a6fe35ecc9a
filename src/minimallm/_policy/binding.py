"""Which limit holds the client back now, in words a progress line can show.

Pure: the caller passes the actors' statistics in (plain values) and ``now``.
Checked in order, the first that applies binds:

==================  ==========================================================
held by the Pacer   ``outage`` (no server: probing) or ``cooldown`` (N s left)
Workers wait for    ``rpm`` (the RPM cap) or ``server-rate`` (learned from the
a send slot         server's headers or its overload answers)
Workers wait for    ``max-outstanding`` (the cap) or ``server-concurrency``
a permit            (the limit learned from the server)
callers wait for    ``max-outstanding``: every Worker is busy
a Worker
==================  ==========================================================

Nothing waiting: nothing binds; the pace is the server's latency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Literal

from minimallm._policy.retrying import describe_wait

__all__ = ["LONG_WAIT_S", "Binding", "binding"]

LONG_WAIT_S = 3.0
"""A hold at least this long (seconds) says until when it lasts."""

Limit = Literal["outage", "cooldown", "rpm", "server-rate", "max-outstanding", "server-concurrency"]


@dataclass(frozen=True, slots=True)
class Binding:
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
) -> Binding | None:
    """What binds now (see the module docstring); None when nothing does. A hold with
    ``LONG_WAIT_S`` or more left says until when (wall clock, from ``now_wall``), and
    the server's Retry-After that set it (``asked_s``), so no long wait is silent."""
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
    if slot_waiting:
        if rate_source in ("headers", "learned") and rate_per_s is not None:
            how = "its headers" if rate_source == "headers" else "learned"
            return Binding("server-rate", f"server rate ~{_rate(rate_per_s)} ({how})")
        return Binding("rpm", f"RPM cap {rpm}/min")
    if permit_waiting or callers_waiting:
        if limit < cap:
            return Binding("server-concurrency", f"server concurrency ~{limit} (learned)")
        return Binding("max-outstanding", f"MAX_OUTSTANDING {cap}")
    return None


def _rate(per_s: float) -> str:
    if per_s >= 10:
        return f"{per_s:.0f}/s"
    if per_s >= 1:
        return f"{per_s:.1f}/s"
    return f"{per_s * 60:.1f}/min"
