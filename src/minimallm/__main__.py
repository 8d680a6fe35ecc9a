"""The ``minimallm`` command: ``minimallm demo`` and ``minimallm mock``."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minimallm`` console script and ``python -m minimallm``."""
    args = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="minimallm", description="Large batches of chat-completion calls."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run a batch against the built-in mock endpoint")
    demo.add_argument("-n", type=int, default=3000, help="number of requests (default 3000)")
    sub.add_parser(
        "mock", help="serve the mock endpoint (see `minimallm mock --help`)", add_help=False
    )
    if args[:1] == ["mock"]:
        from minimallm.mock import main as mock_main

        return mock_main(args[1:])
    ns = parser.parse_args(args)
    if ns.n < 1:
        parser.error(f"-n must be at least 1, got {ns.n}")
    from minimallm._demo import run_demo

    return run_demo(ns.n)


if __name__ == "__main__":
    sys.exit(main())
