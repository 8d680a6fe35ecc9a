"""``minimallm serve``: an OpenAI-compatible server in front of one backend.

Settings come from the same flags and environment variables as ``run-batch``
(:mod:`._settings`); the server itself is :mod:`minimallm.serve`. SIGTERM and Ctrl-C
drain: no new connections, requests in progress finish, the cache commits, exit 0. A
second signal stops at once (exit 130).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TextIO

import trio

from minimallm._errors import ConfigError
from minimallm.cli._settings import add_settings_flags, config_from_flags, resolve

if TYPE_CHECKING:
    from minimallm._config.settings import MinimaLlmConfig
    from minimallm.serve.server import ChatServer, ServeOptions

__all__ = ["ANNOUNCE_PREFIX", "DEFAULT_PORT", "add_parser", "run"]

DEFAULT_PORT = 8990
ANNOUNCE_PREFIX = "minimallm serve: listening on "
"""Start of the stderr line that names the URL clients use (``http://HOST:PORT/v1``)."""

DESCRIPTION = """\
Serve the configured endpoint to any OpenAI client (any process, any language) through
one minimallm backend: POST /v1/chat/completions, GET /v1/models, GET /health. Every
client shares one flow control, one prompt cache (CACHE_DIR) and one single flight:
identical prompts in flight at once reach the upstream once. Answers are the upstream's
JSON bodies; upstream errors keep their status and body (a quota 429 stays a 429);
"stream": true is answered as server-sent events carrying the whole answer. The
client's Authorization is never forwarded: the backend sends OPENAI_API_KEY. Binding
anything but loopback needs MINIMALLM_SERVE_KEY, which clients then send as their API
key (Authorization: Bearer <key>)."""


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``serve`` on the ``minimallm`` subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "serve",
        help="an OpenAI-compatible server sharing one backend between processes",
        description=DESCRIPTION,
        epilog="A live line goes to stderr every --heartbeat seconds while requests come. "
        "SIGTERM or Ctrl-C drains in-flight requests, commits the cache and exits 0.",
    )
    parser.add_argument(
        "--host", default="127.0.0.1",
        help="address to bind (default 127.0.0.1; anything but loopback needs "
        "MINIMALLM_SERVE_KEY)",
    )  # fmt: skip
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT,
        help=f"port; 0 picks a free one (default {DEFAULT_PORT})",
    )  # fmt: skip
    parser.add_argument(
        "--force-model", action="store_true",
        help="send the configured model whatever model the client names",
    )  # fmt: skip
    parser.add_argument("-q", "--quiet", action="store_true", help="no live line")
    add_settings_flags(parser)
    return parser


def run(ns: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    """The command; the exit code (0 stopped by a signal after draining, 2 bad flags,
    settings or a refused bind, 130 stopped by a second signal)."""
    from minimallm.serve.auth import ServeKeyError, check_bind
    from minimallm.serve.server import ServeOptions

    env = os.environ if env is None else env
    err = sys.stderr
    if not 0 <= ns.port <= 65535:
        print(f"minimallm serve: --port={ns.port}: must be 0..65535", file=err)
        return 2
    try:
        key = check_bind(ns.host, env)
        config = config_from_flags(resolve(ns, env))
    except (ServeKeyError, ConfigError) as exc:
        print(f"minimallm serve: {exc}", file=err)
        return 2
    options = ServeOptions(ns.host, ns.port, ns.force_model, key)
    every_s = 0.0 if ns.quiet else config.batch.heartbeat_s
    try:
        return trio.run(_serve, config, options, every_s, err)
    except OSError as exc:  # the bind failed
        print(f"minimallm serve: cannot listen on {ns.host}:{ns.port}: {exc}", file=err)
        return 2


async def _serve(
    config: MinimaLlmConfig, options: ServeOptions, every_s: float, err: TextIO
) -> int:
    from minimallm._backend import OpenAIMinimaLlm
    from minimallm.serve.live import report_live
    from minimallm.serve.server import ChatServer

    backend = OpenAIMinimaLlm(config)
    server = ChatServer(backend, options)
    code = 0
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with backend.serving(), trio.open_nursery() as nursery:
            host, port = await nursery.start(_run_server, server, nursery.cancel_scope)
            shown = f"[{host}]" if ":" in host else host
            key = "clients must send MINIMALLM_SERVE_KEY" if options.key else "no key"
            print(
                f"{ANNOUNCE_PREFIX}http://{shown}:{port}/v1 (model {config.model}, "
                f"upstream {config.base_url}, {key})",
                file=err,
                flush=True,
            )
            if every_s > 0:
                nursery.start_soon(lambda: report_live(server.stats, backend, err, every_s=every_s))
            async for signum in signals:
                if server.draining:  # a second signal: stop now
                    code = 130
                    nursery.cancel_scope.cancel()
                    break
                name = signal.Signals(signum).name
                in_flight = server.stats.in_flight
                print(
                    f"minimallm serve: {name}: draining {in_flight} requests in flight",
                    file=err,
                    flush=True,
                )
                server.drain()  # _run_server returns when the last connection closes
        # leaving serving(): the runtime stops and the cache writer commits
    st = server.stats
    print(
        f"minimallm serve: stopped after {st.requests} requests, {st.cache_hits} from cache, "
        f"{st.errors} errors",
        file=err,
    )
    return code


async def _run_server(
    server: ChatServer,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until drained, then end the command (``scope``: its nursery's)."""
    await server.run(task_status=task_status)
    scope.cancel()
