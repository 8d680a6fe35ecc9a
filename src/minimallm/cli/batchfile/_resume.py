"""Reading what an earlier run already wrote: the custom_ids of OUTPUT and ERRORS.

A run killed mid-write leaves at most a torn last line (no newline): it is not
counted, and the writer cuts it off before appending. Each complete line is read only
as far as its ``custom_id``: run-batch's own lines start with
``{"id":"batch_req_<hex>","custom_id":"..."`` and a regular expression finds it
without decoding the (possibly large) body; any other JSON line with a string
``custom_id`` is decoded in full.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from minimallm._errors import MinimaLlmError

__all__ = ["DoneLine", "ResumeError", "done_lines"]

_HEAD = re.compile(rb'\{"id":"batch_req_[0-9a-f]{32}","custom_id":("(?:[^"\\]|\\.)*")')


class ResumeError(MinimaLlmError, ValueError):
    """An existing OUTPUT or ERRORS file does not belong to this input, so appending
    to it would not give the output of one uninterrupted run."""


@dataclass(frozen=True, slots=True)
class DoneLine:
    """A complete line of an earlier run: its custom_id, its 1-based line number and
    the byte offset just after it (where the file may be cut)."""

    custom_id: str
    line: int
    end: int


def _custom_id(raw: bytes) -> str | None:
    match = _HEAD.match(raw)
    if match is not None:
        value = json.loads(match[1])
    else:
        try:
            obj = json.loads(raw)
        except ValueError:
            return None
        value = obj.get("custom_id") if isinstance(obj, dict) else None
    return value if isinstance(value, str) else None


def done_lines(path: Path, label: str) -> Iterator[DoneLine]:
    """The complete lines of ``path`` (nothing if it does not exist), in order.

    A last line without its newline (a torn write) is left out. Raises
    :class:`ResumeError` for a line that is not a run-batch output line; ``label``
    names the file in that message (``"OUTPUT"``).
    """
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return
    with f:
        end = 0
        for n, raw in enumerate(f, 1):
            if not raw.endswith(b"\n"):
                return  # torn: the writer cuts it off
            end += len(raw)
            custom_id = _custom_id(raw)
            if custom_id is None:
                raise ResumeError(
                    f"cannot resume: {label} {path} line {n} is not a run-batch output line "
                    "(a JSON object with a string custom_id); use --overwrite to start over "
                    "or choose another file"
                )
            yield DoneLine(custom_id, n, end)
