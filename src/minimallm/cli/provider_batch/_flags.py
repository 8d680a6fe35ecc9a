"""The command-line flags of ``run-batch --provider-batch`` and ``batch-status``.

Light on purpose (argparse only): ``minimallm --help`` builds every parser, and the
machinery (:mod:`._command`, :mod:`._status`) is imported only when a command runs.
"""

from __future__ import annotations

import argparse
from typing import Any

__all__ = [
    "MAX_BYTES",
    "MAX_LINES",
    "POLL_MAX_S",
    "POLL_MIN_S",
    "add_flags",
    "add_status_parser",
]

MAX_LINES = 50_000
"""OpenAI's limit of requests per batch file."""
MAX_BYTES = 200 * 1024 * 1024
"""OpenAI's limit of bytes per batch file."""
POLL_MIN_S = 1.0
"""First wait between looks at the batches (seconds)."""
POLL_MAX_S = 60.0
"""Longest wait between looks (seconds)."""

STATUS_DESCRIPTION = """\
Reads each run's state file (OUTPUT.provider-batch.db; without OUTPUT, every one in the
current directory), asks the provider for each batch not yet collected (the API root
and model recorded by the run; the key, proxies and CA settings from the environment,
as for run-batch), and prints one line per batch. --cancel asks the provider to cancel
every batch still running; a run-batch --provider-batch polling them then collects
what they finished."""


def add_flags(parser: argparse.ArgumentParser) -> None:
    """The ``--provider-batch`` flags of ``run-batch``."""
    g = parser.add_argument_group(
        "provider Batch API",
        "With --provider-batch the requests not in the cache are uploaded to the "
        "provider's Batch API (/v1/files, /v1/batches: about half the price, answers "
        "within the completion window) instead of being sent live; OUTPUT and ERRORS "
        "end the same. The state lives in OUTPUT.provider-batch.db: run the same "
        "command again after any interruption to go on polling the same batches "
        "(nothing is uploaded twice), or to send again what an expired, cancelled or "
        "failed batch did not answer. `minimallm batch-status OUTPUT` shows the batches.",
    )
    g.add_argument("--provider-batch", action="store_true", help="use the provider's Batch API")
    g.add_argument(
        "--completion-window", default="24h", metavar="WINDOW",
        help="the batches' completion window (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--batch-max-lines", type=_positive_int, default=MAX_LINES, metavar="N",
        help="requests per uploaded file at most (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--batch-max-bytes", type=_positive_int, default=MAX_BYTES, metavar="BYTES",
        help="bytes per uploaded file at most (default %(default)s: 200 MiB)",
    )  # fmt: skip
    g.add_argument(
        "--poll-min", type=_positive_float, default=POLL_MIN_S, metavar="S",
        help="first wait between looks at the batches, seconds; it grows by half each "
        "time (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--poll-max", type=_positive_float, default=POLL_MAX_S, metavar="S",
        help="longest wait between looks, seconds (default %(default)s)",
    )  # fmt: skip


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected seconds > 0, got {text!r}")
    return value


def add_status_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``batch-status`` on the ``minimallm`` subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "batch-status",
        help="show (or cancel) the provider batches of run-batch --provider-batch runs",
        description=STATUS_DESCRIPTION,
    )
    parser.add_argument("output", nargs="*", metavar="OUTPUT", help="the runs' OUTPUT files")
    parser.add_argument("--cancel", action="store_true", help="cancel every running batch")
    parser.add_argument(
        "--no-refresh", action="store_true", help="show the state as recorded, ask nobody"
    )
    return parser
