"""Sending a prepared ``run-batch`` job: the ordered results stream, written as it comes.

One trio run: the backend, the :class:`~minimallm.cli.batchfile.BatchWriter` (flushed
about once a second, so lines reach the disk while the batch runs), and the stream of
results in input order. However the run ends (done, aborted, Ctrl-C or SIGTERM, a bad
line found in pass 2), every result the stream handed over is written and flushed
before the process exits; results finished out of order behind a slower one are not
(the output must stay in input order) and are redone, from the cache if there is one,
by the next run.

Ctrl-C and SIGTERM arrive only at a checkpoint of the main task
(``restrict_keyboard_interrupt_to_checkpoints``): never in the middle of a write, so a
line is never half-buffered or written twice.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TextIO

import trio

from minimallm._backend import OpenAIMinimaLlm
from minimallm._batch.stream import single_exception
from minimallm._errors import BatchAbortedError, MinimaLlmError
from minimallm._progress import BatchProgress, Progress, format_failure, format_stall
from minimallm._types import MinimaLlmFailure, MinimaLlmResponse
from minimallm.cli.batchfile import BatchFileError, BatchWriter

if TYPE_CHECKING:
    from minimallm.cli.run_batch import Job

__all__ = ["FLUSH_S", "send_job"]

FLUSH_S = 1.0
"""Seconds between flushes of the output files while the batch runs."""

PROG = "minimallm run-batch"


@dataclass(slots=True)
class _Written:
    """What this run wrote (the writer's counts, read after it is closed)."""

    writer: BatchWriter | None = None

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


async def _send(job: Job, progress: Progress, written: _Written) -> None:
    """The trio main: answer ``job.requests()`` and write each result in input order."""
    backend = OpenAIMinimaLlm(job.config)
    try:
        async with backend:
            with job.open_writer() as writer:
                written.writer = writer
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_flush_every, writer, FLUSH_S)
                    async with backend.stream_batched(
                        job.requests(), ordered=True, progress=progress, total=job.plan.todo
                    ) as results:
                        async for _, result in results:
                            assert isinstance(result, MinimaLlmResponse | MinimaLlmFailure)
                            writer.write(result)
                    nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # the flusher's nursery: one exception, not a group
        raise single_exception(group) from None


def send_job(job: Job, *, quiet: bool, err: TextIO) -> int:
    """Send ``job`` (a :class:`~minimallm.cli.run_batch.Job`) and report on ``err``;
    returns the exit code: 0 every request answered, 1 failures (in ERRORS) or the
    batch aborted, 2 the input changed since it was checked, 130 interrupted."""
    plan = job.plan
    where = _Where(job)
    if plan.done:
        print(
            f"{PROG}: resuming: {plan.done:,} of {plan.total:,} requests already done "
            f"({plan.done_ok:,} in {where.output}, {plan.done_failed:,} in {where.errors}); "
            f"{plan.todo:,} to send",
            file=err,
            flush=True,
        )
    if not plan.todo:
        with job.open_writer():  # cuts what an earlier run left past the last line
            pass
        return _finished(job, where, _Written(), err)
    progress: Progress = problems_only(err) if quiet else None
    written = _Written()
    try:
        trio.run(_send, job, progress, written, restrict_keyboard_interrupt_to_checkpoints=True)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; {where.so_far(written)}{where.resume}", file=err)
        return 130
    except BatchAbortedError as exc:
        print(f"{PROG}: stopped: {exc}", file=err)
        print(f"{PROG}: {where.so_far(written)}{where.resume}", file=err)
        return 1
    except BatchFileError as exc:
        print(f"{PROG}: {exc}", file=err)
        print(f"{PROG}: {where.so_far(written)}", file=err)
        return 2
    except (MinimaLlmError, OSError) as exc:
        print(f"{PROG}: stopped: {exc}", file=err)
        print(f"{PROG}: {where.so_far(written)}{where.resume}", file=err)
        return 1
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

    def so_far(self, written: _Written) -> str:
        """``1,234 of 2,000 requests written (234 by this run)``."""
        this_run = written.ok + written.failed
        now = self.done + this_run
        return f"{now:,} of {self.total:,} requests written ({this_run:,} by this run)"
