"""``python -m minimallm.mock``: run the mock server from the command line."""

from __future__ import annotations

import argparse
import signal
import sys

import trio

from minimallm._errors import ConfigError
from minimallm.mock.config import MockServerConfig, echo_responder
from minimallm.mock.dspy_responder import DSPyResponder
from minimallm.mock.faults import NAMED_KINDS
from minimallm.mock.server import MockServer, serve_mock

__all__ = ["ANNOUNCE_PREFIX", "build_parser", "config_from_args", "config_to_argv", "main"]

ANNOUNCE_PREFIX = "minimallm mock endpoint listening on "
"""Start of the one stdout line the server prints once it accepts connections."""


def _fault_rate(text: str) -> tuple[str, float]:
    kind, eq, rate = text.partition("=")
    try:
        if not eq:
            raise ValueError
        return kind.strip(), float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected KIND=PROBABILITY, got {text!r}") from None


def _seed(text: str) -> int | None:
    if text.lower() == "none":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'none', got {text!r}") from None


def build_parser(prog: str = "python -m minimallm.mock") -> argparse.ArgumentParser:
    """The argument parser (exposed so a ``minimallm mock`` subcommand can reuse it)."""
    p = argparse.ArgumentParser(
        prog=prog,
        description="OpenAI-compatible mock chat-completion server for tests, demos, benchmarks.",
    )
    d = MockServerConfig()
    p.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    p.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one (default %(default)s)"
    )
    p.add_argument("--model", default=d.model, help="model id served (default %(default)s)")
    p.add_argument(
        "--latency", type=float, default=d.latency_s,
        help="fixed delay before each answer, seconds (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--latency-jitter", type=float, default=d.latency_jitter_s,
        help="uniform random extra delay in [0, J] seconds (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--capacity", type=int, default=None,
        help="answer 429 when more requests than this are in flight (default: no limit)",
    )  # fmt: skip
    p.add_argument(
        "--retry-after", type=float, default=d.retry_after_s,
        help="Retry-After of 429 answers, seconds (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--fault-rate", type=_fault_rate, action="append", default=[], metavar="KIND=P",
        help="random fault probability per request, e.g. 429=0.01, reset=0.001 (repeatable); "
        "KIND is an HTTP status (100-599) or one of " + ", ".join(sorted(NAMED_KINDS)),
    )  # fmt: skip
    p.add_argument(
        "--seed", type=_seed, default=d.seed,
        help="seed for jitter and faults; 'none': unseeded (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-records", type=int, default=d.max_records,
        help="recent requests kept (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--dspy", action="store_true",
        help="answer DSPy prompts in DSPy's output format (other prompts: echo)",
    )  # fmt: skip
    p.add_argument(
        "--deterministic", action="store_true",
        help="answers carry created 0 and an id derived from the request (same request, "
        "same bytes)",
    )  # fmt: skip
    return p


def config_from_args(args: argparse.Namespace) -> MockServerConfig:
    """Build the config; raises ConfigError for bad values."""
    return MockServerConfig(
        host=args.host,
        port=args.port,
        model=args.model,
        latency_s=args.latency,
        latency_jitter_s=args.latency_jitter,
        capacity=args.capacity,
        retry_after_s=args.retry_after,
        fault_rates=dict(args.fault_rate),
        seed=args.seed,
        max_records=args.max_records,
        responder=DSPyResponder() if args.dspy else echo_responder,
        deterministic=args.deterministic,
    )


def config_to_argv(config: MockServerConfig) -> list[str]:
    """The command-line arguments that rebuild ``config`` in another process.

    Raises ConfigError for a custom responder, which cannot cross a process boundary
    (a ``DSPyResponder`` with the default fallback becomes ``--dspy``: the child gets
    its own, so read answer counts from the child's records, not from that object).
    """
    responder = config.responder
    dspy = isinstance(responder, DSPyResponder)
    if isinstance(responder, DSPyResponder) and responder._fallback is not echo_responder:
        raise ConfigError("a DSPyResponder with a custom fallback cannot cross processes")
    if responder is not echo_responder and not dspy:
        raise ConfigError("a custom responder cannot be passed to a mock server process")
    argv = [
        "--host", config.host,
        "--port", str(config.port),
        "--model", config.model,
        "--latency", repr(config.latency_s),
        "--latency-jitter", repr(config.latency_jitter_s),
        "--retry-after", repr(config.retry_after_s),
        "--max-records", str(config.max_records),
    ]  # fmt: skip
    if config.capacity is not None:
        argv += ["--capacity", str(config.capacity)]
    argv += ["--seed", str(config.seed)]
    for kind, rate in config.fault_rates.items():
        argv += ["--fault-rate", f"{kind}={rate!r}"]
    if dspy:
        argv.append("--dspy")
    if config.deterministic:
        argv.append("--deterministic")
    return argv


async def _serve_and_announce(config: MockServerConfig) -> None:
    """Serve until SIGINT or SIGTERM (caught even where a shell started us with SIGINT
    ignored), then return so every socket is closed in order."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server: MockServer = await nursery.start(serve_mock, config)
            print(ANNOUNCE_PREFIX + server.base_url, flush=True)
            async for _ in signals:
                nursery.cancel_scope.cancel()
                break


def main(argv: list[str] | None = None, *, prog: str = "python -m minimallm.mock") -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and serve until Ctrl-C or SIGTERM.

    Must run on the main thread (signal handling). Returns the exit status: 0 after a
    signal, 1 if the server cannot listen (e.g. the port is taken); bad arguments exit
    with status 2 through argparse. ``prog`` names the command in help and errors.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except ConfigError as exc:
        parser.error(str(exc))
    status = 0
    try:
        trio.run(_serve_and_announce, config)
    except* KeyboardInterrupt:  # a Ctrl-C that landed before the signal receiver existed
        pass
    except* OSError as group:
        print(f"minimallm mock: cannot serve: {group.exceptions[0]}", file=sys.stderr)
        status = 1
    return status
