"""The actors: each a trio task with ``run(*, task_status)``, its own state, reached only
through its channels (typed, frozen messages in ``messages``), with a ``statistics()``
snapshot. They are created and started in one place, ``minimallm._runtime.serve.serve``::

    caller ─ Job ─► Worker x MAX_OUTSTANDING ─ POST ─► server
                     ▲  ▲  │
        Limiter ─ permits  │   Pacer ─ send gate / slots (RPM, learned rate, holds)
                     │     │     ▲
                     └─────┴─ AttemptReport ─► Limiter, Pacer, Cooldown, Monitor
                                 Cooldown ─ Hold / Release ─► Pacer
                     Worker ─ deadline (Watches) ─► Watchdog (TIMEOUT_S)

    per endpoint: the Limiter, Pacer, Cooldown, Watchdog and Workers above (several
                  endpoints of one model: their Workers share the one job queue; a
                  held endpoint's Pacer closes its Admission, see ``admission``)
    per backend:  CacheWriter (batched SQLite commits, off the event loop)
    per batch:    Monitor (heartbeat, what binds, stalls, failures, summary)
"""

from typing import TYPE_CHECKING, Any

from minimallm.actors.cooldown import Cooldown
from minimallm.actors.limiter import Limiter
from minimallm.actors.monitor import Monitor
from minimallm.actors.pacer import Pacer
from minimallm.actors.watchdog import Watchdog
from minimallm.actors.worker import Worker

if TYPE_CHECKING:
    from minimallm.actors.cache_writer import CacheWriter as CacheWriter

__all__ = ["CacheWriter", "Cooldown", "Limiter", "Monitor", "Pacer", "Watchdog", "Worker"]


def __getattr__(name: str) -> Any:
    """``CacheWriter`` on first access: it brings the prompt cache's store (SQLite),
    which a run without a cache never imports."""
    if name == "CacheWriter":
        from minimallm.actors.cache_writer import CacheWriter

        return CacheWriter
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
