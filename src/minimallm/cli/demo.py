"""``minimallm demo``: a batch against the built-in mock endpoint (no key, no network)."""

from __future__ import annotations

import argparse
from typing import Any

__all__ = ["add_parser", "run"]

DEFAULT_N = 3000


def _count(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``demo`` on the ``minimallm`` subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "demo",
        help="run a batch against the built-in mock endpoint (no key, no network)",
        description=(
            "Run a batch of small judging prompts against the built-in mock endpoint, "
            "started in this process with realistic latency and a few 429 and 500 "
            "answers, so the progress lines, retries and cooldown are visible. Needs no "
            "key and no network; progress goes to stderr, the summary to stdout."
        ),
    )
    parser.add_argument(
        "-n", type=_count, default=DEFAULT_N, metavar="N",
        help="number of requests (default %(default)s)",
    )  # fmt: skip
    return parser


def run(ns: argparse.Namespace) -> int:
    """Run the demo; the process exit code."""
    from minimallm.cli.demo_job import run_demo

    return run_demo(ns.n)
