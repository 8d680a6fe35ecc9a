"""``python -m minimallm.mock``: run the mock server from the command line."""

from __future__ import annotations

import argparse
import ipaddress
import signal
import sys
from collections.abc import Callable

import trio

from minimallm._errors import ConfigError
from minimallm.mock.config import CAPACITY_MODES, LATENCY_DISTS, MockServerConfig, echo_responder
from minimallm.mock.dspy_responder import DSPyResponder
from minimallm.mock.faults import NAMED_KINDS
from minimallm.mock.server import MockServer, serve_mock
from minimallm.mock.timeline import Phase, parse_outage, parse_storm, phase_argv

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


def _header(text: str) -> tuple[str, str]:
    name, eq, value = text.partition("=")
    if not (eq and name.strip() and value.strip()):
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value.strip()


def _seconds_or_none(text: str) -> float | None:
    if text.lower() == "none":
        return None
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds or 'none', got {text!r}") from None


def _phase(parse: Callable[[str], Phase]) -> Callable[[str], Phase]:
    def convert(text: str) -> Phase:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


_KINDS_HELP = (
    "fault kinds (for --fault-rate and #mock:fault=): an HTTP status number (100-599, e.g. "
    "429, 500, 503), or "
    + ", ".join(sorted(NAMED_KINDS - {"ok"}))
    + " (reset: close with RST; hang: never answer, hold the connection until the client "
    "leaves; malformed: 200 with a non-JSON body; cut: 200 with a body shorter than its "
    "Content-Length; null: content null; nochoices: JSON without choices), or ok. "
    "Per prompt: #mock:fault=500*2,ok  #mock:retry_after=1.5  #mock:latency=2. "
    "Phases count seconds from the first chat request: --outage 5:20 refuses connections "
    "from 5 s to 25 s (--outage 5:20:blackhole accepts and never answers); "
    "--storm 5:30:429:1 answers every request 429 with Retry-After: 1 for 30 s."
)


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
        epilog=_KINDS_HELP,
    )
    d = MockServerConfig()
    p.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    p.add_argument(
        "--port", type=int, default=8000, help="port; 0 picks a free one (default %(default)s)"
    )
    p.add_argument("--model", default=d.model, help="model id served (default %(default)s)")
    g = p.add_argument_group("latency")
    g.add_argument(
        "--latency", type=float, default=d.latency_s,
        help="delay before each answer (the median, for lognormal), seconds (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--latency-dist", choices=LATENCY_DISTS, default=d.latency_dist,
        help="fixed, or lognormal with median --latency (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--latency-sigma", type=float, default=d.latency_sigma,
        help="sigma of log(latency) for lognormal (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--latency-jitter", type=float, default=d.latency_jitter_s,
        help="uniform random extra delay in [0, J] seconds (default %(default)s)",
    )  # fmt: skip
    g = p.add_argument_group("capacity (concurrent requests)")
    g.add_argument(
        "--capacity", type=int, default=None, help="requests served at once (default: no limit)"
    )
    g.add_argument(
        "--capacity-mode", choices=CAPACITY_MODES, default=d.capacity_mode,
        help="above capacity: answer 429 or 503 at once, or queue (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--retry-after", type=_seconds_or_none, default=d.retry_after_s, metavar="S|none",
        help="Retry-After of capacity refusals and 429 faults, seconds (default %(default)s)",
    )  # fmt: skip
    g = p.add_argument_group("rate limit (token bucket)")
    g.add_argument("--rate-limit", type=float, default=None, help="requests per second")
    g.add_argument("--burst", type=int, default=None, help="bucket size (default: 1 s worth)")
    g.add_argument("--token-rate", type=float, default=None, help="tokens (words) per second")
    g.add_argument("--token-burst", type=int, default=None, help="token bucket size")
    g.add_argument(
        "--no-rate-headers", action="store_true",
        help="rate-limit silently: no x-ratelimit-*, Retry-After or retry-after-ms",
    )  # fmt: skip
    g.add_argument(
        "--retry-after-style", choices=("ceil", "exact"), default=d.retry_after_style,
        help="Retry-After of rate-limit 429s: whole seconds rounded up, or exact "
        "(default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--retry-after-only", action="store_true",
        help="rate-limit 429s carry only Retry-After (whole seconds); no x-ratelimit-*",
    )  # fmt: skip
    g.add_argument(
        "--header", type=_header, action="append", default=[], metavar="NAME=VALUE",
        help="send this header first on every chat answer, refusals included (repeatable; "
        "e.g. x-ratelimit-reset-requests=23h59m0s, or garbage like 1h1h1h)",
    )  # fmt: skip
    g.add_argument(
        "--refuse-every", type=int, default=None, metavar="K",
        help="answer every K-th chat request 429 at once, whatever the load (2: every other)",
    )  # fmt: skip
    g.add_argument(
        "--window-limit", type=int, default=None, metavar="N",
        help="at most N requests per calendar window (LiteLLM-like rpm), 429 above with "
        "llm_provider-retry-after",
    )  # fmt: skip
    g.add_argument(
        "--window", type=float, default=d.window_s, metavar="S",
        help="the calendar window of --window-limit, seconds (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--error-code", default=None, metavar="CODE",
        help="type and code of every error body, e.g. insufficient_quota "
        "(default: mock_error and the status)",
    )  # fmt: skip
    g.add_argument(
        "--reset-style", choices=("openai", "seconds"), default=d.reset_style,
        help="x-ratelimit-reset-* as OpenAI writes it (1.5s, 20ms) or plain seconds "
        "(default %(default)s)",
    )  # fmt: skip
    g = p.add_argument_group("faults and phases")
    g.add_argument(
        "--fault-rate", type=_fault_rate, action="append", default=[], metavar="KIND=P",
        help="random fault probability per request, e.g. 500=0.03, reset=0.01 (repeatable); "
        "KIND is an HTTP status (100-599) or one of " + ", ".join(sorted(NAMED_KINDS)),
    )  # fmt: skip
    g.add_argument(
        "--fault-retry-after", type=_seconds_or_none, default=None, metavar="S|none",
        help="Retry-After of 503 faults, seconds (default: none)",
    )  # fmt: skip
    g.add_argument(
        "--outage", type=_phase(parse_outage), action="append", default=[],
        metavar="START:DURATION[:refuse|blackhole]", help="an outage (repeatable)",
    )  # fmt: skip
    g.add_argument(
        "--storm", type=_phase(parse_storm), action="append", default=[],
        metavar="START:DURATION[:STATUS[:RETRY_AFTER|none]]",
        help="every request answered STATUS (default 429, Retry-After 1) (repeatable)",
    )  # fmt: skip
    p.add_argument(
        "--seed", type=_seed, default=d.seed,
        help="seed for latency and faults; 'none': unseeded (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-records", type=int, default=d.max_records,
        help="recent requests kept (default %(default)s)",
    )  # fmt: skip
    p.add_argument(
        "--max-arrivals", type=int, default=d.max_arrivals,
        help="arrival stamps kept for GET /mock/arrivals (default 0: none)",
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
    g = p.add_argument_group(
        "Batch API (/v1/files, /v1/batches)",
        "Batches run on a time scale: validating, in_progress (lines finish evenly), "
        "finalizing, completed. Each line is answered like a live request (the same "
        "bodies; #mock:fault=400 gives that line an error). GET /mock/batches counts "
        "uploads, uploaded lines, batches created and downloads.",
    )
    g.add_argument(
        "--batch-duration", type=float, default=d.batch_duration_s, metavar="S",
        help="seconds from create to completed (default %(default)s)",
    )  # fmt: skip
    g.add_argument(
        "--batch-outcome", action="append", default=[], metavar="N=KIND[@FRACTION]",
        help="the Nth batch created ends otherwise: N=expired@0.5 (expires once half its "
        "lines are done), N=cancelled@0.5, N=failed (fails validation) (repeatable)",
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
        latency_dist=args.latency_dist,
        latency_sigma=args.latency_sigma,
        capacity=args.capacity,
        capacity_mode=args.capacity_mode,
        retry_after_s=args.retry_after,
        rate_limit_per_s=args.rate_limit,
        burst=args.burst,
        token_rate_per_s=args.token_rate,
        token_burst=args.token_burst,
        rate_headers=not args.no_rate_headers,
        retry_after_style=args.retry_after_style,
        reset_style=args.reset_style,
        retry_after_only=args.retry_after_only,
        extra_headers=tuple(args.header),
        error_code=args.error_code,
        refuse_every=args.refuse_every,
        window_limit=args.window_limit,
        window_s=args.window,
        fault_rates=dict(args.fault_rate),
        fault_retry_after_s=args.fault_retry_after,
        phases=(*args.outage, *args.storm),
        seed=args.seed,
        max_records=args.max_records,
        responder=DSPyResponder() if args.dspy else echo_responder,
        max_arrivals=args.max_arrivals,
        deterministic=args.deterministic,
        batch_duration_s=args.batch_duration,
        batch_outcomes=tuple(args.batch_outcome),
    )


def _opt(value: object) -> str:
    return "none" if value is None else repr(value)


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
        "--latency-dist", config.latency_dist,
        "--latency-sigma", repr(config.latency_sigma),
        "--capacity-mode", config.capacity_mode,
        "--retry-after", _opt(config.retry_after_s),
        "--retry-after-style", config.retry_after_style,
        "--reset-style", config.reset_style,
        "--fault-retry-after", _opt(config.fault_retry_after_s),
        "--max-records", str(config.max_records),
        "--max-arrivals", str(config.max_arrivals),
        "--seed", str(config.seed),
    ]  # fmt: skip
    optional = {
        "--capacity": config.capacity,
        "--rate-limit": config.rate_limit_per_s,
        "--burst": config.burst,
        "--token-rate": config.token_rate_per_s,
        "--token-burst": config.token_burst,
    }
    for flag, value in optional.items():
        if value is not None:
            argv += [flag, repr(value)]
    if not config.rate_headers:
        argv.append("--no-rate-headers")
    argv += ["--batch-duration", repr(config.batch_duration_s)]
    for outcome in config.batch_outcomes:
        argv += ["--batch-outcome", outcome]
    if config.retry_after_only:
        argv.append("--retry-after-only")
    for header, text in config.extra_headers:
        argv += ["--header", f"{header}={text}"]
    if config.error_code is not None:
        argv += ["--error-code", config.error_code]
    if config.refuse_every is not None:
        argv += ["--refuse-every", str(config.refuse_every)]
    if config.window_limit is not None:
        argv += ["--window-limit", str(config.window_limit), "--window", repr(config.window_s)]
    for kind, rate in config.fault_rates.items():
        argv += ["--fault-rate", f"{kind}={rate!r}"]
    for phase in config.phases:
        argv += phase_argv(phase)
    if dspy:
        argv.append("--dspy")
    if config.deterministic:
        argv.append("--deterministic")
    return argv


def _beyond_loopback(host: str) -> str | None:
    """How ``host`` reaches beyond this machine (e.g. "every interface (0.0.0.0)"), or
    None for a loopback address."""
    if host in ("", "0.0.0.0", "::"):
        return f"every interface ({host or '0.0.0.0'})"
    try:
        if ipaddress.ip_address(host).is_loopback:
            return None
    except ValueError:
        if host == "localhost":
            return None
    return f"{host}"


async def _serve_and_announce(config: MockServerConfig) -> None:
    """Serve until SIGINT or SIGTERM (caught even where a shell started us with SIGINT
    ignored), then return so every socket is closed in order."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            server: MockServer = await nursery.start(serve_mock, config)
            print(ANNOUNCE_PREFIX + server.base_url, flush=True)
            exposed = _beyond_loopback(config.host)
            if exposed:
                print(
                    f"minimallm mock: warning: listening on {exposed}, port {server.port}, "
                    "not only on this machine: anyone who can reach it can use this "
                    "endpoint; --host 127.0.0.1 keeps it local",
                    file=sys.stderr,
                    flush=True,
                )
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
