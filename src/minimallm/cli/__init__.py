"""The ``minimallm`` command: one module per subcommand.

``demo`` (:mod:`.demo`), ``mock`` (the mock server's own parser,
:mod:`minimallm.mock.cli`), ``config`` (:mod:`.config`), ``run-batch``
(:mod:`.run_batch`; ``--provider-batch`` in :mod:`.provider_batch`), ``batch-status``
(:mod:`.provider_batch._status`) and ``serve`` (:mod:`.serve`). Subcommands import their
machinery only when they run, so ``minimallm --help`` and ``--version`` answer at once.

Exit codes: 0 success, 1 the work failed, 2 bad arguments or configuration.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import warnings
from typing import NoReturn

from minimallm._errors import CacheWarning, ConfigWarning
from minimallm._version import __version__
from minimallm.cli import config, demo, run_batch, serve

__all__ = ["build_parser", "main"]

DESCRIPTION = (
    "Large batches of chat-completion calls against any OpenAI-compatible endpoint: "
    "fast, polite, resumable. Settings come from flags, else environment variables "
    "(OPENAI_BASE_URL, OPENAI_MODEL, OPENAI_API_KEY, RPM, ...), else defaults; "
    "`minimallm config` shows them."
)


class _CommandsFormatter(argparse.HelpFormatter):
    """Keeps each command's help on its line: argparse measures subcommand names
    without the indent it prints them with (so ``run-batch`` would wrap)."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog)
        self._action_max_length = len("    batch-status") + 2


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="minimallm",
        description=DESCRIPTION,
        epilog="`minimallm COMMAND --help` shows the options of a command.",
        formatter_class=_CommandsFormatter,
    )
    parser.add_argument("--version", action="version", version=f"minimallm {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo.add_parser(sub)
    # `minimallm mock ...` is handed to the mock's own parser (see main); listed here
    # for the overview only.
    sub.add_parser(
        "mock",
        help="serve the OpenAI-compatible mock endpoint (faults, latency, DSPy answers)",
        add_help=False,
    )
    config.add_parser(sub)
    run_batch.add_parser(sub)
    serve.add_parser(sub)
    from minimallm.cli.provider_batch._flags import add_status_parser as add_batch_status

    add_batch_status(sub)
    return parser


def _one_line(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    """minimallm's own warnings as ``minimallm: warning: ...`` (no source line: the
    user did not write that code); any other warning as Python shows it."""
    if issubclass(category, ConfigWarning | CacheWarning):
        return f"minimallm: warning: {message}\n"
    return _python_format(message, category, filename, lineno, line)


_python_format = warnings.formatwarning


def _refuse_unknown(parser: argparse.ArgumentParser, command: str, unknown: list[str]) -> NoReturn:
    """Exit 2 naming what is unknown with the usage of the command it was given to
    (not the top level's) and, for a mistyped flag, the flag meant."""
    sub: argparse.ArgumentParser = next(
        a.choices[command]
        for a in parser._actions  # argparse keeps its subparsers there
        if isinstance(a, argparse._SubParsersAction) and command in a.choices
    )
    flags = [flag for action in sub._actions for flag in action.option_strings]
    hints = [
        f"did you mean {close[0]}?"
        for arg in unknown
        if arg.startswith("--")
        and (close := difflib.get_close_matches(arg.split("=", 1)[0], flags, n=1))
    ]
    sub.error("; ".join([f"unrecognized arguments: {' '.join(unknown)}", *hints]))


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``minimallm`` console script and ``python -m minimallm``;
    returns the exit code."""
    warnings.formatwarning = _one_line
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["mock"]:
        from minimallm.mock.cli import main as mock_main

        return mock_main(args[1:], prog="minimallm mock")
    parser = build_parser()
    ns, unknown = parser.parse_known_args(args)
    if unknown:
        _refuse_unknown(parser, ns.command, unknown)
    if ns.command == "demo":
        return demo.run(ns)
    if ns.command == "config":
        return config.run(ns)
    if ns.command == "serve":
        return serve.run(ns)
    if ns.command == "batch-status":
        from minimallm.cli.provider_batch._status import run as run_status

        return run_status(ns)
    return run_batch.run(ns)
