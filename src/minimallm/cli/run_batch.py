"""``minimallm run-batch INPUT -o OUTPUT [--errors ERRORS]``: a JSONL file of requests.

This module parses the command line and prepares a run (:func:`prepare`): paths
checked, the input validated in full (every bad line reported before anything is
sent), what an earlier run already wrote found, and the configuration built from flags
over the environment. Sending (the streaming batch API, the writer, the progress
display, how the run ends) is :mod:`._batch_send`'s job.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import ConfigError
from minimallm._progress.sinks import PROGRESS_ENV
from minimallm._types import MinimaLlmRequest
from minimallm.cli._settings import add_settings_flags, config_from_flags, resolve
from minimallm.cli.batchfile import (
    BatchFileError,
    BatchPlan,
    BatchWriter,
    Held,
    OutputInUseError,
    OutputLock,
    ResumeError,
    default_errors_path,
    hashes_path,
    input_file,
    iter_requests,
    move_failures_out,
    read_spill,
    scan_batch,
    spill_path,
)

__all__ = ["Job", "add_parser", "prepare", "run"]

PROGRESS_MODES = ("auto", "bar", "lines", "log", "off")

DESCRIPTION = """\
Send every request of a JSONL file and write the answers in input order, as they
complete. Each line is an OpenAI Batch API request ({"custom_id", "method": "POST",
"url": "/v1/chat/completions", "body": {...}}) or the simpler {"custom_id" (or "id"),
"messages", ...other request fields}. Every line is checked before anything is sent;
bad lines are all reported, with their numbers. Answers go to OUTPUT in the Batch API
output format, failures to ERRORS: together they account for every request once. Run
the same command again after a crash, Ctrl-C, SIGTERM or SIGHUP to resume: requests
already in OUTPUT or ERRORS are skipped, answers kept in OUTPUT.pending are written in
their place, the rest are sent, and the files end as if the run had never stopped
(OUTPUT.hashes tells a line edited since its answer was written). --retry-failed sends
the requests in ERRORS again. The model comes from
--model or OPENAI_MODEL, else from the lines (when they all name the same one)."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``run-batch`` on the ``minimallm`` subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "run-batch",
        help="answer every request of a JSONL file, in order, resumably",
        description=DESCRIPTION,
        epilog="Progress goes to stderr: a live bar on a terminal, plain lines elsewhere "
        "(MINIMALLM_PROGRESS=auto|bar|lines|log|off). Ctrl-C, SIGTERM and SIGHUP stop the run "
        "in order: what was written stays, answers received behind a slower line are kept in "
        "OUTPUT.pending for the next run. One run per OUTPUT at a time (OUTPUT.lock). "
        "Exit status: 0 every request answered, 1 some failed (see ERRORS) or the run "
        "stopped early, 2 bad input or flags, 130 interrupted.",
    )
    parser.add_argument("input", metavar="INPUT", help="the requests, one JSON per line; - : stdin")
    parser.add_argument(
        "-o", "--output", required=True, metavar="OUTPUT",
        help="answers in input order; - : stdout (no resume)",
    )  # fmt: skip
    parser.add_argument(
        "--errors", metavar="ERRORS",
        help="failures (default: OUTPUT with .errors.jsonl for .jsonl; with -o -, "
        "failures are written to stdout in line)",
    )  # fmt: skip
    parser.add_argument(
        "--overwrite", action="store_true",
        help="start over, replacing OUTPUT and ERRORS (default: resume from them)",
    )  # fmt: skip
    parser.add_argument(
        "--retry-failed", action="store_true",
        help="send the requests recorded in ERRORS again; those answered move to OUTPUT, "
        "in input order",
    )  # fmt: skip
    parser.add_argument(
        "-q", "--quiet", action="store_true",
        help="no progress display (problems are still reported on stderr)",
    )  # fmt: skip
    add_settings_flags(parser)
    from minimallm.cli.provider_batch._flags import add_flags as add_provider_batch_flags

    add_provider_batch_flags(parser)  # --provider-batch (cli/provider_batch/)
    return parser


@dataclass(frozen=True, slots=True)
class Job:
    """A prepared run: the configuration, the plan of pass 1 and where to write.

    ``output`` is a path or ``-``; ``errors`` a path or None (failures inline in
    OUTPUT, only with ``-o -``); ``spill`` where results received but not written
    are kept when the run stops (None with ``-o -``), ``held`` those an earlier run
    kept there (by custom_id); ``flags`` the variables set by flags (messages name
    the flag).
    """

    config: MinimaLlmConfig
    plan: BatchPlan
    input_name: str
    output: str
    errors: str | None
    spill: Path | None = None
    held: Mapping[str, Held] = field(default_factory=dict)
    flags: Mapping[str, str] = field(default_factory=dict)

    def requests(
        self, skip: Callable[[str, bytes], bool] | None = None
    ) -> Iterator[MinimaLlmRequest]:
        """The requests still to answer, lazily, in input order (``plan.todo`` of them,
        less those ``skip(custom_id, raw line)`` leaves out)."""
        return iter_requests(self.plan, name=self.input_name, skip=skip)

    def open_writer(self) -> BatchWriter:
        """OUTPUT, ERRORS and HASHES, cut to what the plan keeps and opened for
        appending."""
        hashes = None if self.output == "-" else hashes_path(self.output)
        secret = self.config.api_key_value()
        return BatchWriter.open(self.plan, self.output, self.errors, hashes=hashes, secret=secret)


def _same_file(a: str, b: str) -> bool:
    if "-" in (a, b):
        return False
    with contextlib.suppress(OSError):
        return os.path.samefile(a, b)
    return os.path.abspath(a) == os.path.abspath(b)


def _check_paths(ns: argparse.Namespace, errors: str | None) -> str | None:
    if errors == "-":
        return "--errors needs a file (with -o -, leave it out to get failures in line)"
    if ns.retry_failed and (ns.output == "-" or ns.overwrite):
        why = "-o -" if ns.output == "-" else "--overwrite"
        return f"--retry-failed needs the OUTPUT and ERRORS of an earlier run; not with {why}"
    if ns.output == "-" and ns.input == "-":
        return None
    pairs = [("INPUT", ns.input, "OUTPUT", ns.output)]
    if errors is not None:
        pairs += [("INPUT", ns.input, "ERRORS", errors), ("OUTPUT", ns.output, "ERRORS", errors)]
    for a, pa, b, pb in pairs:
        if _same_file(pa, pb):
            return f"{a} and {b} are the same file ({pa}): name different files"
    return _check_writable("-o/--output", ns.output) or (
        None if errors is None else _check_writable("--errors", errors)
    )


def _check_progress(env: Mapping[str, str]) -> str | None:
    mode = env.get(PROGRESS_ENV, "auto").strip().lower() or "auto"
    if mode not in PROGRESS_MODES:
        return (
            f"{PROGRESS_ENV}={env[PROGRESS_ENV]!r} is not a progress mode; use "
            f"{', '.join(PROGRESS_MODES)}"
        )
    return None


def _check_writable(flag: str, path: str) -> str | None:
    """Why ``path`` cannot be an output file (a directory, a missing directory)."""
    if path == "-":
        return None
    if path.endswith(os.sep) or os.path.isdir(path):
        return f"{flag} {path} is a directory: name a file (e.g. {path.rstrip(os.sep)}/out.jsonl)"
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        what = "is not a directory" if os.path.exists(parent) else "does not exist"
        return f"{flag} {path}: the directory {parent} {what}; create it first"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"{flag} {path}: cannot create files in {parent} (permission denied)"
    return None


def prepare(
    ns: argparse.Namespace,
    stack: contextlib.ExitStack,
    env: Mapping[str, str] | None = None,
    err: TextIO | None = None,
) -> Job | int:
    """Everything before the first request: a :class:`Job`, or the exit code 2 after
    printing what is wrong (bad lines, files that do not belong to the input, bad
    settings) on ``err``. ``stack`` keeps the spooled copy of stdin alive."""
    err = sys.stderr if err is None else err
    env = os.environ if env is None else env
    errors = ns.errors if ns.errors is not None else default_errors_path(ns.output)
    problem = _check_paths(ns, errors) or _check_progress(env)
    if problem:
        print(f"minimallm run-batch: {problem}", file=err)
        return 2
    if ns.output != "-":
        try:
            stack.enter_context(OutputLock(ns.output))
        except OutputInUseError as exc:
            print(f"minimallm run-batch: {exc}", file=err)
            return 2
        except OSError as exc:
            print(f"minimallm run-batch: cannot lock {ns.output}: {exc}", file=err)
            return 2
    resolved = resolve(ns, env)
    model = resolved.env.get("OPENAI_MODEL", "").strip() or None  # from a flag or the env
    resume = not ns.overwrite and ns.output != "-"
    name = "stdin" if ns.input == "-" else ns.input
    spill = None if ns.output == "-" else spill_path(ns.output)
    try:
        held = read_spill(spill) if resume and spill is not None else {}
        path = stack.enter_context(input_file(ns.input))
        plan = scan_batch(
            path,
            model=model,
            output=Path(ns.output) if resume else None,
            errors=Path(errors) if resume and errors is not None else None,
            name=name,
            held=held,
            hashes=hashes_path(ns.output) if resume else None,
        )
    except (BatchFileError, ResumeError) as exc:
        print(f"minimallm run-batch: {exc}", file=err)
        return 2
    except OSError as exc:
        print(f"minimallm run-batch: cannot read {name}: {exc.strerror or exc}", file=err)
        return 2
    fallbacks = {"OPENAI_MODEL": (plan.model, "input file")} if plan.model else None
    resolved = resolve(ns, env, fallbacks=fallbacks)
    try:
        config = config_from_flags(resolved)
    except ConfigError as exc:
        print(f"minimallm run-batch: {exc}", file=err)
        return 2
    if getattr(ns, "provider_batch", False) and len(config.base_urls) > 1:
        print(
            "minimallm run-batch: --provider-batch uploads to one provider, but "
            f"OPENAI_BASE_URL lists {len(config.base_urls)} endpoints "
            f"({', '.join(config.base_urls)}): give the one that runs batches",
            file=err,
        )
        return 2
    if ns.retry_failed and plan.done_failed:  # everything checked: now the files change
        assert spill is not None and errors is not None
        failed = move_failures_out(plan, Path(ns.output), Path(errors), spill, held)
        print(
            f"minimallm run-batch: retrying the {failed:,} failed requests of {errors}",
            file=err,
        )
        plan = scan_batch(
            path,
            model=model,
            output=Path(ns.output),
            errors=Path(errors),
            name=name,
            held=held,
            hashes=hashes_path(ns.output),
        )
    return Job(config, plan, name, ns.output, errors, spill, held, resolved.flags)


def _stop_while_preparing(signum: int, frame: object) -> None:
    del signum, frame
    raise KeyboardInterrupt  # nothing is sent or written yet: unwinding is safe


def run(ns: argparse.Namespace) -> int:
    """The command; the process exit code (0 every request answered, 1 failures or the
    batch stopped, 2 bad input or flags, 130 interrupted by Ctrl-C, SIGTERM or SIGHUP)."""
    from minimallm.cli._batch_send import send_job

    # SLURM, docker stop, timeout, a closed terminal: while the input is checked, stop
    # as Ctrl-C does; while sending, the run receives them itself (see _batch_send).
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _stop_while_preparing)
    try:
        with contextlib.ExitStack() as stack:
            job = prepare(ns, stack)
            if isinstance(job, int):
                return job
            if getattr(ns, "provider_batch", False):
                from minimallm.cli.provider_batch._command import run as run_provider_batch

                return run_provider_batch(job, ns, sys.stderr)
            return send_job(job, quiet=ns.quiet, err=sys.stderr)
    except KeyboardInterrupt:  # while checking the input: nothing was sent or written
        print("minimallm run-batch: interrupted; nothing was sent", file=sys.stderr)
        return 130
