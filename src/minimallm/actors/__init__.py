"""The actors: each owns its state and talks only through trio memory channels.

Admission pipeline for one HTTP attempt::

    caller ─► Limiter ─► CooldownGate ─► Pacer ─► Worker (MAX_OUTSTANDING of them)
                 ▲                                  │
                 └──────── token (attempt over) ────┤
                               CooldownGate ◄───────┘ overload (429/502/503/504)

The wiring (which channel goes where) is in one place: ``minimallm._runtime``.
"""

from minimallm.actors.cooldown import CooldownGate, Overload
from minimallm.actors.limiter import Limiter
from minimallm.actors.pacer import Pacer
from minimallm.actors.worker import Worker

__all__ = ["CooldownGate", "Limiter", "Overload", "Pacer", "Worker"]
