"""The bridge from asyncio and from plain threads into trio (the only package that
imports asyncio; ``callables``: an asyncio coroutine function awaited from trio).

One background thread per process runs ``trio.run`` and serves every backend's
asyncio and synchronous callers. Requests go in with ``TrioToken.run_sync_soon``,
replies come back with ``loop.call_soon_threadsafe``; both are coalesced, so a burst
of N calls costs one wake-up per side, not N. Cancelling the awaiting asyncio task (or
Ctrl-C in a blocking call) cancels that call's trio cancel scope, even when the cancel
arrives before the scope exists. The thread starts on first use (guarded against
concurrent first callers), is stopped cleanly at interpreter exit, and is rebuilt in a
forked child.
"""

from __future__ import annotations

import asyncio
import atexit
import os
import threading
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

import outcome
from minimallm._bridge.callables import asyncio_fn_for_trio
from minimallm._errors import BackendClosedError, UsageError

__all__ = [
    "Started",
    "TrioThread",
    "asyncio_fn_for_trio",
    "await_in_trio",
    "call_blocking",
    "current_thread_if_running",
    "trio_token_here",
]

T = TypeVar("T")
_STOP_JOIN_TIMEOUT_S = 10.0


def trio_token_here() -> trio.lowlevel.TrioToken | None:
    """The token of the trio run on this thread, or None outside trio: callers under
    trio run natively, everyone else crosses this bridge."""
    try:
        return trio.lowlevel.current_trio_token()
    except RuntimeError:
        return None


class _Call:
    """One call into trio: the function, how to deliver its outcome, its cancel state."""

    __slots__ = ("cancelled", "deliver", "fn", "scope")

    def __init__(
        self, fn: Callable[[], Awaitable[Any]], deliver: Callable[[outcome.Outcome[Any]], None]
    ) -> None:
        self.fn = fn
        self.deliver = deliver
        self.scope: trio.CancelScope | None = None
        self.cancelled = False


class TrioThread:
    """A daemon thread running one trio run that executes submitted calls."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inbox: list[tuple[bool, _Call]] = []  # (is_cancel, call)
        self._wake_scheduled = False
        self._started = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._stop: trio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="minimallm-trio", daemon=True)

    def __repr__(self) -> str:
        return f"<TrioThread alive={self._thread.is_alive()} queued={len(self._inbox)}>"

    @property
    def token(self) -> trio.lowlevel.TrioToken:
        """The token of the trio run in this thread."""
        assert self._token is not None
        return self._token

    def is_alive(self) -> bool:
        """True while the thread runs."""
        return self._thread.is_alive()

    def start(self) -> None:
        """Start the thread and wait until trio is ready for calls."""
        self._thread.start()
        self._started.wait()

    def _run(self) -> None:
        try:
            trio.run(self._main)
        finally:
            self._started.set()
            self._fail_queued()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        self._stop = trio.Event()
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            self._started.set()
            await self._stop.wait()
            nursery.cancel_scope.cancel()
        self._nursery = None
        # Returning cancels the system tasks (each backend's runtime), which close their
        # connections and flush their work in shielded cleanup before trio.run returns.

    # -- called from any thread ---------------------------------------------------------

    def submit(self, call: _Call) -> None:
        """Queue ``call`` to run in trio."""
        self._enqueue(False, call)

    def cancel(self, call: _Call) -> None:
        """Cancel ``call`` (before or after it started)."""
        self._enqueue(True, call)

    def stop(self) -> None:
        """Stop the run (cancelling calls in flight) and join the thread."""
        if not self._thread.is_alive() or self._token is None or self._stop is None:
            return
        try:
            self._token.run_sync_soon(self._stop.set)
        except trio.RunFinishedError:
            return
        if threading.current_thread() is not self._thread:
            self._thread.join(_STOP_JOIN_TIMEOUT_S)

    def _enqueue(self, is_cancel: bool, call: _Call) -> None:
        with self._lock:
            self._inbox.append((is_cancel, call))
            if self._wake_scheduled:
                return
            self._wake_scheduled = True
        try:
            self.token.run_sync_soon(self._drain)
        except trio.RunFinishedError:
            self._fail_queued()

    def _fail_queued(self) -> None:
        with self._lock:
            items, self._inbox = self._inbox, []
            self._wake_scheduled = False
        for is_cancel, call in items:
            if not is_cancel:
                call.deliver(
                    outcome.Error(BackendClosedError("the minimallm trio thread has stopped"))
                )

    # -- trio thread ---------------------------------------------------------------------

    def _drain(self) -> None:
        with self._lock:
            items, self._inbox = self._inbox, []
            self._wake_scheduled = False
        for is_cancel, call in items:
            if is_cancel:
                call.cancelled = True
                if call.scope is not None:
                    call.scope.cancel()
            elif self._nursery is None:
                call.deliver(
                    outcome.Error(BackendClosedError("the minimallm trio thread is stopping"))
                )
            else:
                self._nursery.start_soon(self._run_call, call, name="minimallm-bridge-call")

    @staticmethod
    async def _run_call(call: _Call) -> None:
        with trio.CancelScope() as scope:
            call.scope = scope
            if call.cancelled:
                scope.cancel()
            result = await outcome.acapture(call.fn)
        if isinstance(result, outcome.Error) and isinstance(result.error, trio.Cancelled):
            # trio.Cancelled must never leave trio: the call was cancelled by its caller
            # (nobody is waiting) or by shutdown (the caller learns the backend closed).
            result = outcome.Error(BackendClosedError("the call was cancelled inside minimallm"))
        call.deliver(result)


_lock = threading.Lock()
_thread: TrioThread | None = None
_hooks_installed = False


def _reset_after_fork() -> None:
    global _thread, _lock
    _thread = None  # the thread does not exist in the child
    _lock = threading.Lock()


def _stop_at_exit() -> None:
    thread = _thread
    if thread is not None:
        thread.stop()


def get_thread() -> TrioThread:
    """The process's trio thread, started on first use."""
    global _thread, _hooks_installed
    thread = _thread
    if thread is not None and thread.is_alive():
        return thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            if not _hooks_installed:
                atexit.register(_stop_at_exit)
                os.register_at_fork(after_in_child=_reset_after_fork)
                _hooks_installed = True
            new = TrioThread()
            new.start()
            _thread = new
        return _thread


def current_thread_if_running() -> TrioThread | None:
    """The trio thread if it was started and still runs (never starts it)."""
    thread = _thread
    return thread if thread is not None and thread.is_alive() else None


class _LoopReplies:
    """Replies for one asyncio loop, handed over in bursts.

    It holds no reference to its loop (each reply's future knows it): it is the value
    of a WeakKeyDictionary keyed by that loop, and a strong reference there would keep
    every finished ``asyncio.run()``'s loop alive for good.
    """

    __slots__ = ("__weakref__", "_lock", "_pending", "_scheduled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pending: list[tuple[asyncio.Future[Any], outcome.Outcome[Any]]] = []
        self._scheduled = False

    def post(self, fut: asyncio.Future[Any], result: outcome.Outcome[Any]) -> None:
        """(trio thread) queue a reply; wake the loop once per burst."""
        with self._lock:
            self._pending.append((fut, result))
            if self._scheduled:
                return
            self._scheduled = True
        try:
            fut.get_loop().call_soon_threadsafe(self._deliver)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            with self._lock:
                self._pending.clear()
                self._scheduled = False

    def _deliver(self) -> None:
        with self._lock:
            items, self._pending = self._pending, []
            self._scheduled = False
        for fut, result in items:
            if fut.done():  # cancelled by its task meanwhile
                continue
            if isinstance(result, outcome.Value):
                fut.set_result(result.value)
            elif isinstance(result, outcome.Error):
                fut.set_exception(result.error)


_replies: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopReplies] = (
    weakref.WeakKeyDictionary()
)
_replies_lock = threading.Lock()


def _replies_for(loop: asyncio.AbstractEventLoop) -> _LoopReplies:
    replies = _replies.get(loop)
    if replies is None:
        with _replies_lock:
            replies = _replies.setdefault(loop, _LoopReplies())
    return replies


class Started:
    """A call running in the trio thread on its own (see :func:`start_in_trio`)."""

    __slots__ = ("_call", "_thread")

    def __init__(self, thread: TrioThread, call: _Call) -> None:
        self._thread = thread
        self._call = call

    def cancel(self) -> None:
        """Cancel the call (from any thread)."""
        self._thread.cancel(self._call)


def start_in_trio(
    fn: Callable[[], Awaitable[Any]], on_done: Callable[[outcome.Outcome[Any]], None]
) -> Started:
    """Run ``fn()`` in the trio thread without waiting for it; ``on_done(outcome)`` is
    called in the trio thread when it ends. For work that outlives one call (a batch
    stream held open across many ``await_in_trio`` crossings)."""
    thread = get_thread()
    call = _Call(fn, on_done)
    thread.submit(call)
    return Started(thread, call)


async def await_in_trio(fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``fn()`` in the trio thread and await its result from asyncio."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[T] = loop.create_future()
    replies = _replies_for(loop)
    call = _Call(fn, lambda result: replies.post(fut, result))
    thread = get_thread()
    thread.submit(call)
    try:
        return await fut
    except asyncio.CancelledError:
        thread.cancel(call)
        raise


def call_blocking(fn: Callable[[], Awaitable[T]], *, allow_running_loop: bool = False) -> T:
    """Run ``fn()`` in the trio thread and block this thread until it is done.

    Refuses to run on a thread with a running asyncio loop (it would freeze the loop)
    unless ``allow_running_loop``: the deliberate exception for a synchronous DSPy call
    in a notebook cell, where freezing the loop for the call's duration is what the user
    asked for, as with DSPy's own LM. Always refuses on the trio thread itself (it would
    deadlock). Ctrl-C cancels the call.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        if not allow_running_loop:
            raise UsageError(
                "a synchronous minimallm call was made inside a running asyncio event loop; "
                "use `await` on the async method instead"
            )
    thread = get_thread()
    if threading.current_thread() is thread._thread:
        raise UsageError("a synchronous minimallm call was made on minimallm's own trio thread")
    done = threading.Event()
    box: list[outcome.Outcome[T]] = []

    def deliver(result: outcome.Outcome[T]) -> None:
        box.append(result)
        done.set()

    call = _Call(fn, deliver)
    thread.submit(call)
    try:
        done.wait()
    except BaseException:  # KeyboardInterrupt: stop the work, then let it propagate
        thread.cancel(call)
        done.wait(_STOP_JOIN_TIMEOUT_S)
        raise
    return box[0].unwrap()
