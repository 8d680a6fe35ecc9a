"""``minimallm batch-status [OUTPUT ...] [--cancel]``: the batches of provider-batch runs.

Reads each run's state file (``OUTPUT.provider-batch.db``; without OUTPUT, every one in
the current directory), asks the provider for each batch not yet collected (the API
root and model recorded by the run; the key, proxies and CA settings from the
environment, as for ``run-batch``), and prints one line per batch. ``--cancel`` asks
the provider to cancel every batch still running; a ``run-batch --provider-batch``
polling them then collects what they finished. The state file is only read here.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sqlite3
import sys
from pathlib import Path
from typing import TextIO

import trio

from minimallm._config.settings import MinimaLlmConfig
from minimallm._errors import ConfigError
from minimallm.cli.provider_batch._api import ProviderApi, ProviderApiError
from minimallm.cli.provider_batch._display import describe_chunk
from minimallm.cli.provider_batch._state import FINAL, Chunk, RunState, state_path

__all__ = ["run"]

PROG = "minimallm batch-status"
_SUFFIX = ".provider-batch.db"


def _states(outputs: list[str]) -> list[Path]:
    if outputs:
        return [state_path(o) for o in outputs]
    return sorted(Path().glob("*" + _SUFFIX))


def run(ns: argparse.Namespace, err: TextIO | None = None, out: TextIO | None = None) -> int:
    """The command; 0, or 1 when a state is missing or the provider could not be asked."""
    err = sys.stderr if err is None else err
    out = sys.stdout if out is None else out
    paths = _states(ns.output)
    if not paths:
        print(f"{PROG}: no {_SUFFIX} state file here; name the OUTPUT of a run", file=err)
        return 1
    status = 0
    for path in paths:
        if not path.exists():
            print(f"{PROG}: {path}: no such state file (was the run made with "
                  "--provider-batch?)", file=err)  # fmt: skip
            status = 1
            continue
        try:
            state = RunState(path)
            try:
                meta, chunks = state.meta(), state.chunks()
            finally:
                state.close()
        except sqlite3.Error as exc:
            print(f"{PROG}: {path}: cannot read it: {exc}", file=err)
            status = 1
            continue
        print(f"{path.name.removesuffix(_SUFFIX)} ({len(chunks)} batches):", file=out)
        live = [c for c in chunks if c.batch_id and c.status not in FINAL]
        if live and not ns.no_refresh:
            try:
                chunks = trio.run(_refresh, meta, chunks, ns.cancel)
            except (ProviderApiError, ConfigError) as exc:
                print(f"{PROG}: {exc}", file=err)
                status = 1
        for i, chunk in enumerate(chunks, 1):
            print("  " + describe_chunk(chunk, i, len(chunks)), file=out)
    return status


async def _refresh(meta: dict[str, str], chunks: list[Chunk], cancel: bool) -> list[Chunk]:
    env = {**os.environ, "OPENAI_BASE_URL": meta["api_base"], "OPENAI_MODEL": meta["model"]}
    api = ProviderApi(MinimaLlmConfig.from_env(env))
    fresh: list[Chunk] = []
    for chunk in chunks:
        if chunk.batch_id and chunk.status not in FINAL:
            batch = await api.batch(chunk.batch_id)
            if cancel and batch.get("status") not in FINAL:
                batch = await api.cancel(chunk.batch_id)
            chunk = dataclasses.replace(chunk, status=batch.get("status"), info=batch)
        fresh.append(chunk)
    return fresh
