"""``minimallm config``: the effective configuration and where each setting comes from."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import ConfigError
from minimallm._version import __version__
from minimallm.cli._settings import (
    SETTINGS,
    Resolved,
    add_settings_flags,
    config_from_flags,
    resolve,
    shown,
)

__all__ = ["add_parser", "render", "run"]

DESCRIPTION = (
    "Show the configuration minimallm would use here: every setting, its value and its "
    "source (a flag, an environment variable, or the default). The API key is never "
    "shown: only whether it is set and from which variable."
)


def add_parser(sub: Any) -> argparse.ArgumentParser:
    """Register ``config`` on the ``minimallm`` subparsers."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "config",
        help="show the effective configuration and the source of each setting",
        description=DESCRIPTION,
    )
    add_settings_flags(parser)
    return parser


_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@")  # never shown


def _value(config: MinimaLlmConfig, field: str) -> object:
    if field.startswith("batch."):
        return getattr(config.batch, field.removeprefix("batch."))
    return getattr(config, field)


def render(resolved: Resolved, config: MinimaLlmConfig | None) -> list[str]:
    """The table: one line per setting, then the key. With ``config`` None (invalid
    settings) each value is shown as written."""
    rows: list[tuple[str, str, str]] = []
    for s in SETTINGS:
        if config is not None:
            value = shown(_value(config, s.field))
        elif s.field in resolved.written:
            value = repr(_URL_USERINFO.sub(r"\1***@", resolved.written[s.field]))
        else:
            value = "(not set)" if s.field in ("base_url", "model") else shown(s.default)
        rows.append((s.field, value, resolved.sources[s.field]))
    if resolved.key_from is not None:
        source = f"env {resolved.key_from}" + (
            f" ({resolved.key_note})" if resolved.key_note else ""
        )
        rows.append(("api_key", "set (hidden)", source))
    else:
        rows.append(("api_key", "not set", resolved.key_note))
    width = max(len(r[0]) for r in rows)
    vwidth = min(40, max(len(r[1]) for r in rows))
    lines = [f"  {name:<{width}}  {value:<{vwidth}}  {source}" for name, value, source in rows]
    head = f"  {'setting':<{width}}  {'value':<{vwidth}}  source"
    return [head, *lines]


def run(
    ns: argparse.Namespace,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the table (stdout); 0 if the configuration is valid, else the problems
    on stderr and 2."""
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    resolved = resolve(ns, os.environ if env is None else env)
    try:
        config: MinimaLlmConfig | None = config_from_flags(resolved)
    except ConfigError as exc:
        config, problem = None, str(exc)
    else:
        problem = ""
    print(f"minimallm {__version__}: effective configuration", file=out)
    print("(a flag beats its environment variable, which beats the default)", file=out)
    for line in render(resolved, config):
        print(line, file=out)
    if config is not None:
        for url in config.chat_completions_urls:
            print(f"requests go to: POST {url}", file=out)
        return 0
    print(f"minimallm config: {problem}", file=err)
    return 2
