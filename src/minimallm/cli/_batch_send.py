"""Sending a prepared ``run-batch`` job: the ordered results stream, written as it comes.

One trio run: the backend, the :class:`~minimallm.cli.batchfile.BatchWriter` (flushed
about once a second, so lines reach the disk while the batch runs), and the stream of
results in input order. Answers an earlier run kept in ``OUTPUT.pending`` are not sent
again: :class:`~minimallm.cli._known.KnownResults` writes each in its place.

Ctrl-C (unless ignored), SIGTERM and SIGHUP are received by trio
(``open_signal_receiver``), never raised in the middle of anything: the first one
cancels the stream; what the stream handed over is written and flushed, the results it
finished but held back (behind a slower line) go to ``OUTPUT.pending`` with the kept
ones not written yet, the backend closes (committing its cache), and the run reports
in one line and exits with 130. A second one during that orderly stop ends the process
at once (exit 130, one line saying answers not yet written may be lost). A run that
stops because every request failed alike records none of its failures (they are held
until the first answer).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NoReturn, TextIO

import trio

from minimallm._backend import OpenAIMinimaLlm
from minimallm._batch.stream import TrioBatchStream, single_exception
from minimallm._errors import BatchAbortedError, MinimaLlmError
from minimallm._progress import BatchProgress, Progress, format_failure, format_stall
from minimallm._types import MinimaLlmFailure, MinimaLlmResponse, MinimaLlmResult
from minimallm.cli._known import KnownResults
from minimallm.cli._settings import name_flags
from minimallm.cli.batchfile import BatchFileError, BatchWriter, write_spill

if TYPE_CHECKING:
    from minimallm.cli.run_batch import Job

__all__ = ["FLUSH_S", "send_job"]

FLUSH_S = 1.0
"""Seconds between flushes of the output files while the batch runs."""

PROG = "minimallm run-batch"


@dataclass(slots=True)
class _Written:
    """What this run did: the writer (its counts read after it is closed), the signal
    that stopped it, the results kept in the spill file and the failures dropped."""

    writer: BatchWriter | None = None
    signum: int | None = None
    kept: int = 0
    dropped: int = 0
    complete: bool = False

    @property
    def ok(self) -> int:
        return 0 if self.writer is None else self.writer.ok

    @property
    def failed(self) -> int:
        return 0 if self.writer is None else self.writer.failed


def problems_only(err: TextIO) -> Callable[[BatchProgress], None]:
    """The ``--quiet`` progress: no display, but the first failures and stall warnings
    are still printed on ``err`` (they are problems, not progress)."""

    def show(p: BatchProgress) -> None:
        if p.kind == "failure" and p.failure is not None:
            print(format_failure(p.failure_number, p.failure), file=err, flush=True)
        elif p.kind == "stall":
            print("\n".join(format_stall(p)), file=err, flush=True)

    return show


async def _flush_every(writer: BatchWriter, seconds: float) -> None:
    while True:
        await trio.sleep(seconds)
        writer.flush()


async def _watch(
    signals: AsyncIterator[int], stop: trio.CancelScope, written: _Written, err: TextIO
) -> None:
    """For the whole trio run: the first stop signal cancels ``stop`` (the orderly
    stop), a second one ends the process at once (:func:`_force_exit`)."""
    async for signum in signals:
        if written.signum is not None:
            _force_exit(signum, err)
        written.signum = signum
        stop.cancel()


def _force_exit(signum: int, err: TextIO) -> NoReturn:
    """A second stop signal during the orderly stop: exit 130 now, saying what that
    may cost (the OUTPUT lock goes with the process; the rerun resumes as after
    ``kill -9``)."""
    name = signal.Signals(signum).name
    with contextlib.suppress(Exception):
        print(
            f"{PROG}: {name} again: stopping at once; answers received but not yet "
            "written may be lost (run the same command again to resume)",
            file=err,
            flush=True,
        )
    os._exit(130)


async def _send(
    job: Job, progress: Progress, written: _Written, signals: tuple[int, ...], err: TextIO
) -> None:
    """The trio main: answer ``job.requests()`` and write each result in input order;
    a stop signal ends the stream, and what it held back goes to the spill file."""
    stop = trio.CancelScope()
    known = KnownResults(job.held, job.config.api_key_value())
    with trio.open_signal_receiver(*signals) as received:
        if written.signum is not None:  # arrived before the receiver was open
            stop.cancel()
        # a system task: it outlives the nurseries below, so a second signal during
        # the orderly stop (closing the backend, committing the cache) still counts
        trio.lowlevel.spawn_system_task(_watch, received, stop, written, err)
        backend = OpenAIMinimaLlm(job.config)
        held_back: list[MinimaLlmResult] = []
        try:
            async with backend:
                with job.open_writer() as writer:
                    written.writer = writer
                    if job.spill is not None:
                        writer.hold_failures()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(_flush_every, writer, FLUSH_S)
                        requests = job.requests(known.skip)
                        total = max(job.plan.todo - job.plan.held, 0)
                        async with backend.stream_batched(
                            requests, ordered=True, progress=progress, total=total
                        ) as results:
                            assert isinstance(results, TrioBatchStream)  # under trio
                            try:
                                with stop:
                                    async for _, result in results:
                                        assert isinstance(
                                            result, MinimaLlmResponse | MinimaLlmFailure
                                        )
                                        known.write(writer, result)
                                    known.write_rest(writer)
                                    written.complete = True
                            except BatchAbortedError as exc:
                                if _all_alike(exc):
                                    written.dropped = writer.drop_held()
                                else:
                                    held_back = _results(results.held_back())
                                raise
                            if stop.cancelled_caught:
                                held_back = _results(results.held_back())
                        nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the flusher's nursery: one exception, not a group
            raise single_exception(group) from None
        finally:
            if job.spill is not None:
                keep = (
                    []
                    if written.complete
                    else known.leftover(held_back, drop_failures=written.dropped > 0)
                )
                written.kept = write_spill(job.spill, keep)


def _results(pairs: Sequence[tuple[int, object]]) -> list[MinimaLlmResult]:
    return [r for _, r in pairs if isinstance(r, MinimaLlmResponse | MinimaLlmFailure)]


def _all_alike(exc: BatchAbortedError) -> bool:
    return ": every request failed: " in str(exc)


def _stop_signals() -> tuple[int, ...]:
    """SIGTERM and SIGHUP always; SIGINT unless it is ignored (a job started with
    ``cmd &`` by a non-interactive shell ignores it, and should keep doing so)."""
    signals = [signal.SIGTERM, signal.SIGHUP]
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signals.append(signal.SIGINT)
    return tuple(signals)


def send_job(job: Job, *, quiet: bool, err: TextIO) -> int:
    """Send ``job`` (a :class:`~minimallm.cli.run_batch.Job`) and report on ``err``;
    returns the exit code: 0 every request answered, 1 failures (in ERRORS) or the
    batch aborted, 2 the input changed since it was checked, 130 interrupted (Ctrl-C,
    SIGTERM or SIGHUP: all stop the run the same orderly way)."""
    plan = job.plan
    where = _Where(job)
    if plan.done or plan.held:
        print(
            f"{PROG}: resuming: {plan.done:,} of {plan.total:,} requests already done "
            f"({plan.done_ok:,} in {where.output}, {plan.done_failed:,} in {where.errors})"
            + (f", {plan.held:,} more kept in {job.spill} by the last run" if plan.held else "")
            + f"; {plan.todo - plan.held:,} to send",
            file=err,
            flush=True,
        )
    if not plan.todo:
        with job.open_writer():  # cuts what an earlier run left past the last line
            pass
        if job.spill is not None:
            write_spill(job.spill, [])
        return _finished(job, where, _Written(), err)
    progress: Progress = problems_only(err) if quiet else None
    written = _Written()
    signals = _stop_signals()

    def record(signum: int, frame: object) -> None:  # outside the receiver's lifetime
        del frame
        if written.signum is not None and not written.complete:
            _force_exit(signum, err)
        written.signum = written.signum or signum

    previous = {s: signal.signal(s, record) for s in signals}
    try:
        trio.run(_send, job, progress, written, signals, err)
    except KeyboardInterrupt:  # not expected (SIGINT is received), but never a traceback
        written.signum = written.signum or signal.SIGINT
    except BatchAbortedError as exc:
        print(f"{PROG}: stopped: {name_flags(str(exc), job.flags)}", file=err)
        if written.dropped:
            print(
                f"{PROG}: the {written.dropped:,} failures of this run are not recorded: "
                "fix the cause, then run the same command again",
                file=err,
            )
        resume = where.resume
        if resume and _all_alike(exc):  # the same command would fail the same way
            resume = "; fix the cause, then run the command again to resume"
        print(f"{PROG}: {where.so_far(written)}{resume}", file=err)
        return 1
    except BatchFileError as exc:
        print(f"{PROG}: {exc}", file=err)
        print(f"{PROG}: {where.so_far(written)}", file=err)
        return 2
    except (MinimaLlmError, OSError) as exc:
        print(f"{PROG}: stopped: {exc}", file=err)
        print(f"{PROG}: {where.so_far(written)}{where.resume}", file=err)
        return 1
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    if written.signum is not None and not written.complete:  # a signal after the end: done
        name = signal.Signals(written.signum).name
        print(f"{PROG}: interrupted by {name}; {where.so_far(written)}{where.resume}", file=err)
        return 130
    return _finished(job, where, written, err)


def _finished(job: Job, where: _Where, written: _Written, err: TextIO) -> int:
    ok = job.plan.done_ok + written.ok
    failed = job.plan.done_failed + written.failed
    if failed:
        print(
            f"{PROG}: done: {ok:,} answers in {where.output}, {failed:,} failures in "
            f"{where.errors}",
            file=err,
        )
        return 1
    print(f"{PROG}: done: {ok:,} answers in {where.output}", file=err)
    return 0


class _Where:
    """How the messages name the files and what resuming takes."""

    def __init__(self, job: Job) -> None:
        self.total = job.plan.total
        self.done = job.plan.done
        self.output = "stdout" if job.output == "-" else job.output
        self.errors = self.output if job.errors is None else job.errors
        self.resume = "" if job.output == "-" else "; run the same command again to resume"
        self.spill = job.spill

    def so_far(self, written: _Written) -> str:
        """``1,234 of 2,000 requests written (234 by this run); 12 answers received out
        of order kept in out.jsonl.pending``."""
        this_run = written.ok + written.failed
        now = self.done + this_run
        text = f"{now:,} of {self.total:,} requests written ({this_run:,} by this run)"
        if written.kept:
            text += (
                f"; {written.kept:,} more received and kept in {self.spill} "
                "(written in their place by the next run)"
            )
        return text
