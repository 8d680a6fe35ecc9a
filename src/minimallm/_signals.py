"""Make SIGTERM stop a program the way Ctrl-C does (opt-in, one call).

SIGTERM is what SLURM (at the time limit and on ``scancel``), Kubernetes, ``docker
stop``, systemd and ``timeout`` send. Python's default for it is to die at once, like
SIGKILL: no ``finally`` block runs, so answers received during the last
``max_delay_s`` (0.5 s) that the cache writer had not yet committed are lost. Ctrl-C
(SIGINT) instead raises ``KeyboardInterrupt``, which minimallm handles as an orderly
stop: the batch is cancelled within a second and every answer received is committed.

:func:`install_sigterm_handler` routes SIGTERM to whatever SIGINT does at that moment:
asyncio's runner (which cancels the main task), trio's handler, the user's own, or
Python's default (``KeyboardInterrupt``). Importing minimallm never installs it.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from minimallm._errors import UsageError

__all__ = ["install_sigterm_handler"]

_Handler = Any  # what signal.signal returns: a callable, SIG_DFL, SIG_IGN or None


def _sigterm_as_ctrl_c(signum: int, frame: FrameType | None) -> None:
    """SIGTERM: do what Ctrl-C would do now."""
    del signum
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)  # asyncio's runner, trio's, the user's, Python's
    else:  # SIGINT ignored or left to the OS: a SIGTERM must still stop the program
        raise KeyboardInterrupt


def install_sigterm_handler() -> _Handler:
    """Make SIGTERM behave like Ctrl-C in this process; returns the previous handler.

    After this, ``kill <pid>``, SLURM's time limit, ``docker stop`` or ``timeout``
    stop a running batch the way Ctrl-C does: ``KeyboardInterrupt`` in the main
    thread (under ``asyncio.run``, the main task is cancelled first, as on Ctrl-C),
    in-flight requests cancelled within a second, and every answer already received
    written to the cache before the process exits. Without it, SIGTERM ends the
    process at once and the answers of roughly the last half second are lost.

    Idempotent: a second call changes nothing (and returns this handler). Restore the
    old behaviour with ``signal.signal(signal.SIGTERM, previous)``. Must be called
    from the main thread (a Python rule for signal handlers); raises
    :class:`~minimallm.UsageError` elsewhere. The ``minimallm`` command line calls it.
    """
    if threading.current_thread() is not threading.main_thread():
        raise UsageError(
            "install_sigterm_handler() must be called from the main thread (Python "
            "installs signal handlers only there); call it at the start of your program"
        )
    previous = signal.getsignal(signal.SIGTERM)
    if previous is not _sigterm_as_ctrl_c:
        try:
            signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
        except ValueError as exc:  # the main thread of a sub-interpreter
            raise UsageError(f"install_sigterm_handler() cannot install a handler: {exc}") from None
    return previous
