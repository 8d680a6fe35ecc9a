"""The two passes over a ``run-batch`` input file, in bounded memory.

Pass 1 (:func:`scan_batch`) reads every line before anything is sent: it validates
each one, finds duplicate custom_ids with an :class:`~._ids.IdTable` (25 MB for 10^6
lines; nothing else grows with the file), notes the first model a line names, and, when
an earlier run left OUTPUT and ERRORS files, walks them alongside the input to find how
many requests are already done. Every bad line is reported in one
:class:`BatchFileError`. Pass 2 (:func:`iter_requests`) reads the file again lazily and
yields the requests not yet done, one at a time.

Resuming relies on how :class:`~._output.BatchWriter` writes: results in input order,
each flush writing ERRORS before OUTPUT. So the requests already done are a *prefix*
of the input (each in OUTPUT or in ERRORS, in order), except that ERRORS may hold a
few lines past it (written just before a crash cut OUTPUT short): those are dropped
and redone, which keeps both files in input order. Anything else (a custom_id not in
the input, lines out of order, a request missing from both files before the last
done one) is refused with :class:`~._resume.ResumeError`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass
from pathlib import Path

from minimallm._errors import MinimaLlmError
from minimallm._types import MinimaLlmRequest
from minimallm.cli.batchfile._hashes import UNKNOWN, line_hash, read_hashes
from minimallm.cli.batchfile._ids import IdTable
from minimallm.cli.batchfile._lines import LineError, check_line, parse_line
from minimallm.cli.batchfile._resume import DoneLine, ResumeError, done_lines

__all__ = [
    "MAX_SHOWN",
    "PROGRESS_LINES",
    "BatchFileError",
    "BatchPlan",
    "iter_requests",
    "scan_batch",
]

MAX_SHOWN = 100
"""Bad lines listed in full in a BatchFileError; the rest are counted."""
PROGRESS_LINES = 100_000
"""How often :func:`scan_batch` reports its progress (lines)."""


class BatchFileError(MinimaLlmError, ValueError):
    """The input file has bad lines; nothing was sent.

    ``problems`` holds ``(line number, message)`` for the first :data:`MAX_SHOWN`
    bad lines in line order (lines naming a wrong model are one problem per model);
    ``count`` is the number of bad lines in all, ``shown`` how many of them
    ``problems`` covers.
    """

    def __init__(
        self,
        path: str,
        problems: list[tuple[int, str]],
        count: int,
        shown: int | None = None,
        *,
        nothing_sent: bool = True,
    ) -> None:
        noun = "line" if count == 1 else "lines"
        sent = ", nothing was sent" if nothing_sent else ""
        lines = [f"{path}: {count} bad {noun}{sent}:"]
        lines += [f"  line {n}: {message}" if n > 0 else f"  {message}" for n, message in problems]
        shown = len(problems) if shown is None else shown  # one problem may cover many lines
        if count > shown:
            lines.append(f"  ... and {count - shown} more bad lines")
        super().__init__("\n".join(lines))
        self.problems = problems
        self.count = count


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """What pass 1 learnt; hand it to :func:`iter_requests` and ``BatchWriter.open``.

    ``path``: the input file (a spooled copy for stdin); ``total``: requests in it
    (blank lines are skipped and not counted); ``model``: the run's model, else the
    first model a line names (None when none names one); ``done``: requests already
    answered by an earlier run, the first ``done`` of the input (``done_ok`` of them
    in OUTPUT, ``done_failed`` in ERRORS); ``output_keep``/``errors_keep``: bytes of
    OUTPUT and ERRORS to keep (a torn last line, and ERRORS lines past the done
    prefix, are cut); ``redo``: such ERRORS lines, whose requests are sent again;
    ``held``: requests still to do whose results an earlier run kept (see
    :mod:`._spill`); ``stamp`` the file's identity and version when it was checked
    (pass 2 refuses another).
    """

    path: Path
    total: int
    model: str | None = None
    done: int = 0
    done_ok: int = 0
    done_failed: int = 0
    output_keep: int = 0
    errors_keep: int = 0
    redo: int = 0
    held: int = 0
    stamp: tuple[int, ...] = ()

    @property
    def todo(self) -> int:
        """Requests still to send."""
        return self.total - self.done


class _Walk:
    """Pass 1's walk through OUTPUT and ERRORS alongside the input."""

    def __init__(self, output: Path | None, errors: Path | None) -> None:
        self._out = done_lines(output, "OUTPUT") if output else iter(())
        self._err = done_lines(errors, "ERRORS") if errors else iter(())
        self.out_head: DoneLine | None = next(self._out, None)
        self.err_head: DoneLine | None = next(self._err, None)
        self.in_prefix = True
        self.done = self.ok = self.failed = self.out_keep = self.err_keep = self.redo = 0
        self.first_todo: tuple[int, str] | None = None

    def step(self, line: int, custom_id: str) -> None:
        out, err = self.out_head, self.err_head
        if self.in_prefix and out is not None and out.custom_id == custom_id:
            self.done, self.ok, self.out_keep = self.done + 1, self.ok + 1, out.end
            self.out_head = next(self._out, None)
        elif err is not None and err.custom_id == custom_id:
            if self.in_prefix:
                self.done, self.failed, self.err_keep = self.done + 1, self.failed + 1, err.end
            else:
                self.redo += 1
            self.err_head = next(self._err, None)
        elif self.in_prefix:
            self.in_prefix = False
            self.first_todo = (line, custom_id)

    @property
    def finished(self) -> bool:
        return self.out_head is None and self.err_head is None

    def check(self, input_name: str) -> None:
        """Raise ResumeError if the files hold lines the walk could not place."""
        if self.out_head is not None and self.first_todo is not None:
            line, custom_id = self.first_todo
            raise ResumeError(
                f"cannot resume: OUTPUT line {self.out_head.line} has custom_id "
                f"{self.out_head.custom_id!r}, but {input_name} line {line} "
                f"({custom_id!r}) comes first and is in neither OUTPUT nor ERRORS: the "
                f"files are not from an earlier run of this input; use --overwrite to start "
                "over or choose another output file"
            )
        for label, head in (("OUTPUT", self.out_head), ("ERRORS", self.err_head)):
            if head is not None:
                raise ResumeError(
                    f"cannot resume: {label} line {head.line} has custom_id "
                    f"{head.custom_id!r}, which is not in {input_name} (or not in its "
                    "order); use --overwrite to start over or choose another output file"
                )


def scan_batch(
    path: Path,
    *,
    model: str | None = None,
    output: Path | None = None,
    errors: Path | None = None,
    name: str | None = None,
    progress: Callable[[int], None] | None = None,
    held: Container[str] | None = None,
    hashes: Path | None = None,
) -> BatchPlan:
    """Pass 1: validate every line of ``path`` and find what is already done.

    ``model``: the run's model (``--model`` / ``OPENAI_MODEL``), the plan's model when
    set; else the first model a line names (the model of lines that name none). Lines
    may name different models: each line's request is sent to its own.
    ``output``/``errors``: the
    files of an earlier run to resume (missing files count as empty). ``name`` names
    the input in messages (default: its path). ``progress`` is called with the number
    of lines read every :data:`PROGRESS_LINES` lines (pass 1 takes ~7 s per million
    lines: worth a word on screen). Raises :class:`BatchFileError` listing
    every bad line, :class:`ResumeError` when the files do not belong to this input,
    OSError when the input cannot be read.
    """
    name = name or str(path)
    ids = IdTable(_estimate_lines(path))
    problems: list[tuple[int, str, int]] = []  # (line, message, bad lines it stands for)
    count = 0
    suspects: list[tuple[int, int, str]] = []  # (first line, line, custom_id)
    first_model: str | None = None  # the first model a line names
    walk = _Walk(output, errors)
    total = 0
    held_at: list[int] = []  # the request numbers of held custom_ids
    recorded = read_hashes(hashes)
    changed: list[tuple[int, str]] = []  # (line, custom_id) of done requests edited since

    def bad(line: int, message: str) -> None:
        nonlocal count
        count += 1
        if len(problems) < MAX_SHOWN:
            problems.append((line, message, 1))

    with path.open("rb") as f:
        stamp = _stamp(os.fstat(f.fileno()))
        for n, raw in enumerate(f, 1):
            if progress is not None and not n % PROGRESS_LINES:
                progress(n)
            try:
                checked = check_line(raw)
            except LineError as exc:
                bad(n, str(exc))
                continue
            if checked is None:
                continue
            custom_id, line_model = checked
            total += 1
            if held is not None and custom_id in held:
                held_at.append(total)
            first = ids.add(custom_id, n)
            if first:
                if len(suspects) < MAX_SHOWN:
                    suspects.append((first, n, custom_id))
                else:
                    count += 1  # counted, not confirmed: 64-bit collisions are negligible
                continue
            if first_model is None:
                first_model = line_model
            if not walk.finished:
                done = walk.done
                walk.step(n, custom_id)
                if walk.done > done and hashes is not None:
                    entry = next(recorded, UNKNOWN)
                    if entry != UNKNOWN and entry != line_hash(raw) and len(changed) < MAX_SHOWN:
                        changed.append((n, custom_id))
    del ids
    for _, n, message in _confirm(path, suspects):
        bad(n, message)
    if count:
        problems.sort(key=lambda p: p[0])
        shown = problems[:MAX_SHOWN]
        covered = sum(lines for _, _, lines in shown)
        raise BatchFileError(name, [(n, message) for n, message, _ in shown], count, covered)
    walk.check(name)
    if changed:
        raise ResumeError(_changed_message(name, changed))
    return BatchPlan(
        path=path,
        total=total,
        model=model or first_model,
        done=walk.done,
        done_ok=walk.ok,
        done_failed=walk.failed,
        output_keep=walk.out_keep,
        errors_keep=walk.err_keep,
        redo=walk.redo,
        held=sum(1 for at in held_at if at > walk.done),
        stamp=stamp,
    )


def _stamp(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _changed_message(name: str, changed: list[tuple[int, str]]) -> str:
    shown = ", ".join(f"line {n} ({cid!r})" for n, cid in changed[:5])
    more = f" and {len(changed) - 5} more" if len(changed) > 5 else ""
    return (
        f"cannot resume: {len(changed)} request(s) of {name} changed since an earlier run "
        f"wrote their results: {shown}{more}; use --overwrite to start over, or choose "
        "another output file (or restore the lines)"
    )


def _estimate_lines(path: Path) -> int:
    """Lines in the file, guessed from its size and its first 64 KiB (sizes the id
    table once instead of growing it step by step)."""
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(1 << 16)
    except OSError:
        return 0
    lines = head.count(b"\n")
    if not lines or size <= len(head):
        return lines
    return int(size / (len(head) / lines) * 1.05)


def _confirm(path: Path, suspects: list[tuple[int, int, str]]) -> Iterator[tuple[int, int, str]]:
    """The suspected duplicates whose earlier line really has the same custom_id."""
    if not suspects:
        return
    wanted = {first for first, _, _ in suspects}
    ids: dict[int, str] = {}
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if n in wanted:
                checked = check_line(raw)
                if checked is not None:
                    ids[n] = checked[0]
                if len(ids) == len(wanted):
                    break
    for first, n, custom_id in suspects:
        if ids.get(first) == custom_id:
            yield first, n, f"duplicate custom_id {custom_id!r} (first on line {first})"


def iter_requests(
    plan: BatchPlan,
    *,
    name: str | None = None,
    skip: Callable[[str, bytes], bool] | None = None,
) -> Iterator[MinimaLlmRequest]:
    """Pass 2: the requests not yet done (``plan.todo`` of them), in input order.

    ``skip(custom_id, raw line)`` is called for each of them, in order, just before it
    would be yielded; True leaves it out (its result is known already). Reads lazily:
    one line in memory at a time. Raises :class:`BatchFileError` if the file changed
    since :func:`scan_batch` checked it.
    """
    name = name or str(plan.path)
    done = plan.done
    seen = 0
    changed = f"{name} (changed since it was checked)"
    with plan.path.open("rb") as f:
        stamp = _stamp(os.fstat(f.fileno()))
        if plan.stamp and stamp != plan.stamp:
            how = (
                "replaced by another file"
                if stamp[:2] != plan.stamp[:2]
                else f"edited ({stamp[2]:,} bytes now, {plan.stamp[2]:,} when checked)"
            )
            raise BatchFileError(changed, [(0, f"{how} after it was checked")], 1)
        for n, raw in enumerate(f, 1):
            if not raw or raw.isspace():
                continue
            seen += 1
            if seen <= done:
                continue
            try:
                parsed = parse_line(raw)
            except LineError as exc:
                raise BatchFileError(changed, [(n, str(exc))], 1, nothing_sent=False) from None
            assert parsed is not None
            if skip is None or not skip(parsed.custom_id, raw):
                yield parsed.request
        now = _stamp(os.fstat(f.fileno()))
    if seen != plan.total:
        problem = f"has {seen} requests now, {plan.total} when checked"
        raise BatchFileError(changed, [(seen, problem)], 1, nothing_sent=False)
    if plan.stamp and now != plan.stamp:  # edited in place while it was read
        problem = "edited while the run read it (a line or an id may differ from the check)"
        raise BatchFileError(changed, [(seen, problem)], 1, nothing_sent=False)
