"""Where a backend's runtime runs: a trio system task by default, or the caller's nursery.

:func:`~minimallm._runtime.serve.serve` needs a task to run in. A backend keeps one
:class:`Host` per trio run (the caller's own run, or the bridge thread's):

- **By default** the host runs ``serve`` in a *system task* of that run, so a trio
  caller needs no nursery of its own and an asyncio or sync caller never sees trio.
  The trade-off, documented: a system task must not raise (it would crash the whole
  trio run), so an actor's failure is kept here and raised to every caller that
  waits on the runtime and to every later one (as
  :class:`~minimallm.BackendFailedError`), not to the code that created the backend.
  Closing the backend (``aclose``) clears it; the next call starts a new runtime.
- **``async with backend.serving():``** runs the same ``serve`` in a nursery of the
  caller's (trio only), so an actor's failure also reaches that nursery: the block is
  cancelled and the ``async with`` raises the one ``BackendFailedError``.
"""

from __future__ import annotations

import trio

from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import BackendClosedError, BackendFailedError
from minimallm._runtime.serve import Runtime, RuntimeOptions, serve

__all__ = ["Host"]


class Host:
    """One backend's runtime in one trio run: started, running, ended (cleanly or
    with the failure kept for later callers)."""

    __slots__ = ("_done", "_ready", "_stop_early", "failure", "runtime")

    def __init__(self) -> None:
        self.runtime: Runtime | None = None
        self.failure: BackendFailedError | None = None
        self._ready = trio.Event()
        self._done = trio.Event()
        self._stop_early = False

    def __repr__(self) -> str:
        state = "failed" if self.failure else "ended" if self._done.is_set() else "running"
        return f"<Host {state} {self.runtime!r}>"

    @property
    def ended(self) -> bool:
        """The runtime is over (stopped or failed)."""
        return self._done.is_set()

    def started(self, runtime: Runtime | None = None) -> None:
        """(``serve``'s task status) The actors run; callers may go in."""
        self.runtime = runtime
        if self._stop_early and runtime is not None:
            runtime.stop()
        self._ready.set()

    async def run(
        self, cfg: MinimaLlmConfig, options: RuntimeOptions, *, reraise: bool = False
    ) -> None:
        """Run ``serve`` until it is stopped. A failure is kept for callers, and raised
        here too only with ``reraise`` (a caller's nursery, never a system task)."""
        try:
            await serve(cfg, options, task_status=self)
        except BackendFailedError as exc:
            self.failure = exc
            if reraise:
                raise
        finally:
            self._ready.set()  # wake anyone waiting for a start that will not come
            self._done.set()

    async def wait_ready(self) -> Runtime:
        """The running runtime, once started; the failure, or BackendClosedError, if
        it ended instead."""
        await self._ready.wait()
        runtime = self.runtime
        if runtime is None or self._done.is_set() or not runtime.running:
            raise self.closed_error()
        return runtime

    def closed_error(self) -> Exception:
        """What a caller of an ended runtime is told: its failure, or that it stopped."""
        if self.runtime is not None:
            return self.runtime.life.closed_error()
        if self.failure is not None:
            error = BackendFailedError(str(self.failure))
            error.__cause__ = self.failure.__cause__
            return error
        return BackendClosedError("the minimallm runtime has stopped")

    async def aclose(self) -> None:
        """Stop the runtime and wait until every actor (the CacheWriter's final commit
        included) has ended."""
        if self.runtime is not None:
            self.runtime.stop()
        else:
            self._stop_early = True  # still starting: stop as soon as it runs
        await self._done.wait()
