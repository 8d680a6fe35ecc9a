"""The actors. Admission owns the three gates every HTTP attempt passes; Workers own
the connections::

    caller ─► Admission [ Limiter (a free Worker) · Cooldown · Pacer ] ─► Worker.attempt
                 ▲                                                          │
                 └──── finish: overload → Cooldown, Worker → Limiter ───────┘

Admission's fast path is a synchronous check and the attempt runs in the caller's
task; only callers that must wait park in its line (see ``actors/admission.py`` for
the measured reason). The Watchdog ends attempts that outlive TIMEOUT_S (see
``actors/worker.py``). The wiring is in one place: ``minimallm._runtime``.
"""

from minimallm.actors.admission import Admission
from minimallm.actors.cooldown import Cooldown, Overload
from minimallm.actors.limiter import Limiter
from minimallm.actors.pacer import Pacer
from minimallm.actors.worker import Watchdog, Worker

__all__ = ["Admission", "Cooldown", "Limiter", "Overload", "Pacer", "Watchdog", "Worker"]
