"""The files of ``minimallm run-batch``: input validation, output lines, resuming.

No networking here: the command drives these with the streaming batch API.

* Input (:mod:`._lines`, :mod:`._scan`): JSONL in the OpenAI Batch API format or the
  simple ``{"custom_id" | "id", "messages", ...}`` one; ``-`` is stdin. Pass 1
  (:func:`scan_batch`) checks every line and reports all bad ones at once; pass 2
  (:func:`iter_requests`) yields the requests lazily.
* Output (:mod:`._output`): the Batch API output format, one line per request in
  input order; successes in OUTPUT, failures in ERRORS (OUTPUT + ERRORS = input).
* Resume (:mod:`._resume`, pass 1): what an earlier run already wrote is skipped, and
  the files end as if the run had never stopped.
"""

from minimallm.cli.batchfile._hashes import hashes_path, line_hash
from minimallm.cli.batchfile._lines import CHAT_URL, LineError, ParsedLine, parse_line
from minimallm.cli.batchfile._lock import OutputInUseError, OutputLock
from minimallm.cli.batchfile._output import (
    BatchWriter,
    batch_request_id,
    default_errors_path,
    error_line,
    raw_json_text,
    success_line,
)
from minimallm.cli.batchfile._resume import ResumeError
from minimallm.cli.batchfile._retry import move_failures_out
from minimallm.cli.batchfile._scan import (
    MAX_SHOWN,
    BatchFileError,
    BatchPlan,
    iter_requests,
    scan_batch,
)
from minimallm.cli.batchfile._spill import Held, read_spill, spill_path, write_spill
from minimallm.cli.batchfile._stdin import input_file

__all__ = [
    "CHAT_URL",
    "MAX_SHOWN",
    "BatchFileError",
    "BatchPlan",
    "BatchWriter",
    "Held",
    "LineError",
    "OutputInUseError",
    "OutputLock",
    "ParsedLine",
    "ResumeError",
    "batch_request_id",
    "default_errors_path",
    "error_line",
    "hashes_path",
    "input_file",
    "iter_requests",
    "line_hash",
    "move_failures_out",
    "parse_line",
    "raw_json_text",
    "read_spill",
    "scan_batch",
    "spill_path",
    "success_line",
    "write_spill",
]
