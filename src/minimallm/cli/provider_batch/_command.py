"""``minimallm run-batch INPUT -o OUTPUT --provider-batch``: the run, start to end.

1. The state file beside OUTPUT (:mod:`._state`) is opened (locked: one run at a time)
   or made; a state from another input is refused.
2. First run: the plan (:func:`._plan.plan_run`): cache hits and bad requests become
   results at once, the rest go into chunk files. A later run: requests an expired,
   cancelled or failed batch left unanswered go into new chunk files
   (:func:`._plan.plan_resend`): running the same command again sends them again.
3. Every result ready in input order is written to OUTPUT/ERRORS (the same writer as
   a live run), then the batches are submitted and polled (:mod:`._drive`) until
   each is collected, writing as they come back.
4. What is left unanswered is said, with how to send it.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import trio

from minimallm._cache.store import CacheUnavailableError, PromptCache
from minimallm._errors import MinimaLlmError
from minimallm.cli.batchfile import BatchFileError, BatchWriter
from minimallm.cli.provider_batch._api import ProviderApi, ProviderApiError
from minimallm.cli.provider_batch._collect import write_ready
from minimallm.cli.provider_batch._display import BatchDisplay
from minimallm.cli.provider_batch._drive import Driver, Polling
from minimallm.cli.provider_batch._plan import Limits, chunk_file, plan_resend, plan_run
from minimallm.cli.provider_batch._state import RunState, state_path

if TYPE_CHECKING:
    from minimallm.cli.run_batch import Job

__all__ = ["run"]

PROG = "minimallm run-batch"


def _lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def _forget(output: str, state: Path, err: TextIO) -> None:
    """--overwrite: drop the state (and its chunk files) of an earlier run."""
    if not state.exists():
        return
    old = RunState(state)
    try:
        running = [c.batch_id for c in old.chunks() if c.batch_id and not c.collected]
        ids = [c.id for c in old.chunks()]
    finally:
        old.close()
    if running:
        print(
            f"{PROG}: --overwrite: forgetting {len(running)} batch(es) still at the provider "
            f"({', '.join(running)}); cancel them there if you do not want to pay for them",
            file=err,
        )
    for chunk in ids:
        chunk_file(output, chunk).unlink(missing_ok=True)
    state.unlink()


def run(job: Job, ns: argparse.Namespace, err: TextIO) -> int:
    """The command (see the module docstring); the exit code."""
    if job.output == "-":
        print(f"{PROG}: --provider-batch needs -o OUTPUT (a file: its state lives beside it)",
              file=err)  # fmt: skip
        return 2
    path = state_path(job.output)
    if ns.overwrite:
        _forget(job.output, path, err)
    fd = _lock(path)
    if fd is None:
        print(f"{PROG}: another run is using {path}; wait for it or stop it", file=err)
        return 2
    state = RunState(path)
    try:
        return _run(job, ns, err, state)
    finally:
        state.close()
        os.close(fd)


def _check(job: Job, meta: dict[str, str], err: TextIO) -> bool:
    size = str(job.plan.path.stat().st_size)
    if meta.get("total") != str(job.plan.total) or meta.get("input_bytes") != size:
        print(
            f"{PROG}: {state_path(job.output)} belongs to another input ({meta.get('total')} "
            f"requests, {meta.get('input_bytes')} bytes; {job.input_name} has "
            f"{job.plan.total} and {size}): use --overwrite to start over",
            file=err,
        )
        return False
    if job.plan.done < int(meta.get("first", "0")):
        print(
            f"{PROG}: {job.output} holds fewer answers than when the provider batch began: "
            "use --overwrite to start over",
            file=err,
        )
        return False
    return True


def _run(job: Job, ns: argparse.Namespace, err: TextIO, state: RunState) -> int:
    cfg = job.config
    meta = state.meta()
    if meta.get("planned") and not _check(job, meta, err):
        return 2
    cache: PromptCache | None = None
    if cfg.cache_dir is not None:
        try:
            cache = PromptCache.open(cfg.cache_dir)
        except CacheUnavailableError as exc:
            print(f"{PROG}: running WITHOUT the prompt cache: {exc}", file=err)
    limits = Limits(ns.batch_max_lines, ns.batch_max_bytes)
    plan = job.plan
    try:
        with contextlib.ExitStack() as stack:
            if cache is not None:
                stack.callback(cache.close)
            if not meta.get("planned"):
                state.start({
                    "total": str(plan.total),
                    "input_bytes": str(plan.path.stat().st_size),
                    "first": str(plan.done),
                    "model": cfg.model,
                    "api_base": cfg.api_base,
                })  # fmt: skip
                plan_run(state, job.requests(), first=plan.done, model=cfg.model,
                         output=job.output, limits=limits, cache=cache)  # fmt: skip
            else:
                resent = plan_resend(state, job.requests(), first=plan.done, model=cfg.model,
                                     output=job.output, limits=limits,
                                     input_name=job.input_name)  # fmt: skip
                if resent:
                    print(f"{PROG}: sending {resent:,} unanswered requests again", file=err)
            writer = stack.enter_context(job.open_writer())
            return _send(job, ns, err, state, cache, writer)
    except KeyboardInterrupt:
        print(
            f"{PROG}: interrupted; the batches go on at the provider: run the same command "
            f"again to pick them up (`minimallm batch-status {job.output}` shows them, "
            "--cancel stops them)",
            file=err,
        )
        return 130
    except BatchFileError as exc:
        print(f"{PROG}: {exc}", file=err)
        return 2
    except (ProviderApiError, MinimaLlmError, OSError) as exc:
        print(f"{PROG}: stopped: {exc}; run the same command again to go on", file=err)
        return 1


def _send(
    job: Job,
    ns: argparse.Namespace,
    err: TextIO,
    state: RunState,
    cache: PromptCache | None,
    writer: BatchWriter,
) -> int:
    plan = job.plan
    position = write_ready(state, writer, plan.done)
    chunks = state.chunks()
    _, answered, _ = state.counts(plan.done)
    pending = sum(c.lines for c in chunks if not c.collected)
    files = sum(not c.collected for c in chunks)
    print(
        f"{PROG}: provider batch: {plan.todo:,} requests to do, {answered:,} answered "
        f"already (cache or earlier batches), {pending:,} in {files} batch file(s) at the "
        "provider or to upload",
        file=err,
        flush=True,
    )
    where = {"position": position}

    def write() -> None:
        where["position"] = write_ready(state, writer, where["position"])

    def warn(text: str) -> None:
        print(f"{PROG}: {text}", file=err, flush=True)

    display = BatchDisplay(err, quiet=ns.quiet)
    if any(not c.collected for c in chunks):
        driver = Driver(
            state=state,
            api=ProviderApi(cfg := job.config, retry_s=ns.poll_min),
            output=job.output,
            window=ns.completion_window,
            polling=Polling(ns.poll_min, max(ns.poll_min, ns.poll_max)),
            display=display,
            cache=cache,
            write=write,
            secret=cfg.api_key_value(),
            warn=warn,
        )
        try:
            trio.run(driver.run, restrict_keyboard_interrupt_to_checkpoints=True)
        finally:
            display.close()
    for chunk in state.chunks():  # a chunk file left by a run killed just after its create
        if chunk.batch_id is not None:
            chunk_file(job.output, chunk.id).unlink(missing_ok=True)
    write()
    return _finish(job, err, state, writer, where["position"])


def _finish(job: Job, err: TextIO, state: RunState, writer: BatchWriter, position: int) -> int:
    plan = job.plan
    ok = plan.done_ok + writer.ok
    failed = plan.done_failed + writer.failed
    errors = job.errors or job.output
    left = plan.total - position
    if left:
        unanswered = sum(1 for _ in state.unanswered(plan.done))
        ended = sorted({f"{c.batch_id} {c.status}" for c in state.chunks()
                        if c.collected and c.status != "completed"})  # fmt: skip
        print(
            f"{PROG}: {position:,} of {plan.total:,} requests written ({ok:,} answers in "
            f"{job.output}, {failed:,} failures in {errors}); {unanswered:,} not answered"
            + (f" ({', '.join(ended)})" if ended else "")
            + ": run the same command again to send them in a new batch, or without "
            "--provider-batch to send them live",
            file=err,
        )
        return 1
    if failed:
        print(f"{PROG}: done: {ok:,} answers in {job.output}, {failed:,} failures in {errors}",
              file=err)  # fmt: skip
        return 1
    print(f"{PROG}: done: {ok:,} answers in {job.output}", file=err)
    return 0
