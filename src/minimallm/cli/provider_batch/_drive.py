"""The trio part of a provider-batch run: upload, create, poll, download, collect.

Every step records what it is about to do before doing it and what it did right
after, so the same command after a kill at any point goes on from there:

* a chunk without a file id: if its intent ``uploading`` was recorded, the provider's
  file list is searched for its name (and size) first; only a file not found is
  uploaded (again);
* a chunk with a file but no batch: if ``creating`` was recorded, the batch list is
  searched for a batch of that input file first;
* a batch not yet collected: polled (the interval grows from ``poll_min_s`` by half
  each time, up to ``poll_max_s``); once final, its output and error files are
  downloaded, checked and stored (results, cache, "collected") in one transaction,
  and every result now in order is written to OUTPUT/ERRORS.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import trio

from minimallm._cache.store import PromptCache
from minimallm.cli.provider_batch._api import ProviderApi, ProviderApiError
from minimallm.cli.provider_batch._collect import Collected, collect_file
from minimallm.cli.provider_batch._display import BatchDisplay
from minimallm.cli.provider_batch._flags import POLL_MAX_S, POLL_MIN_S
from minimallm.cli.provider_batch._plan import chunk_file
from minimallm.cli.provider_batch._state import FINAL, Chunk, RunState

__all__ = ["CRASH_ENV", "Driver", "Polling"]

CRASH_ENV = "MINIMALLM_TEST_CRASH_AT"
"""Tests only: the step at which the process kills itself with SIGKILL (``uploaded``,
``created``, ``downloaded``, ``collected``), to hit the narrow windows between a call
to the provider and the state saying it was made."""

_SEARCH_PAGES = 50
"""Pages of the provider's lists searched for a file or batch made before a kill."""


def crash_point(name: str) -> None:
    """SIGKILL this process here if :data:`CRASH_ENV` names this point (tests only)."""
    if os.environ.get(CRASH_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Polling:
    """How often to ask (seconds): from ``min_s``, growing by half up to ``max_s``."""

    min_s: float = POLL_MIN_S
    max_s: float = POLL_MAX_S


@dataclass(slots=True)
class Driver:
    """Drives the chunks of ``state`` to the end; ``write`` writes what is ready."""

    state: RunState
    api: ProviderApi
    output: str
    window: str
    polling: Polling
    display: BatchDisplay
    cache: PromptCache | None
    write: Callable[[], None]
    secret: str | None
    warn: Callable[[str], None]
    collected: dict[int, Collected] = field(default_factory=dict)

    async def run(self) -> None:
        """Submit what is not submitted, then poll until every batch is collected."""
        for chunk in self.state.chunks():
            if chunk.batch_id is None:
                await self._submit(chunk)
                self.display.show(self.state.chunks())
        delay = self.polling.min_s
        while True:
            active = [c for c in self.state.chunks() if c.batch_id and not c.collected]
            if not active:
                break
            for chunk in active:
                assert chunk.batch_id is not None
                batch = await self._patient(partial(self.api.batch, chunk.batch_id))
                self.state.set_batch(chunk.id, batch)
                if batch.get("status") in FINAL:
                    await self._collect(chunk, batch)
            chunks = self.state.chunks()
            if all(c.collected for c in chunks):
                self.display.show(chunks)
                break
            self.display.show(chunks, f"  (next look in {delay:.0f} s)")
            await trio.sleep(delay)
            delay = min(self.polling.max_s, delay * 1.5)

    async def _patient(self, call: Callable[[], Any]) -> Any:
        """``call()`` until it does not fail transiently (the API already retried a
        GET a few times: here the wait is the polling interval, without end)."""
        delay = self.polling.min_s
        while True:
            try:
                return await call()
            except ProviderApiError as exc:
                if not exc.transient:
                    raise
                self.warn(f"{exc}; trying again in {delay:.0f} s")
            await trio.sleep(delay)
            delay = min(self.polling.max_s, delay * 2)

    # -- upload and create ------------------------------------------------------------

    async def _submit(self, chunk: Chunk) -> None:
        file_id = chunk.file_id
        if file_id is None:
            if chunk.status == "uploading":  # a run stopped during (or just after) it
                file_id = await self._patient(lambda: self._find_file(chunk))
            if file_id is None:
                self.state.set_status(chunk.id, "uploading")
                path = chunk_file(self.output, chunk.id)
                file_id = await self._patient(lambda: self._upload(chunk, path))
            self.state.set_file(chunk.id, file_id)
        batch = None
        if chunk.status == "creating":
            batch = await self._patient(lambda: self._find_batch(file_id))
        if batch is None:
            self.state.set_status(chunk.id, "creating")
            metadata = {"minimallm_chunk": chunk.name}
            batch = await self._patient(lambda: self._create(chunk, file_id, metadata))
        self.state.set_batch(chunk.id, batch)
        chunk_file(self.output, chunk.id).unlink(missing_ok=True)

    async def _upload(self, chunk: Chunk, path: Path) -> str:
        try:
            uploaded = await self.api.upload(path, chunk.name)
            crash_point("uploaded")
        except ProviderApiError as exc:
            if exc.transient:  # it may have landed: look before uploading again
                found = await self._find_file(chunk)
                if found is not None:
                    return found
            raise
        return str(uploaded["id"])

    async def _create(self, chunk: Chunk, file_id: str, metadata: dict[str, str]) -> Any:
        try:
            batch = await self.api.create_batch(file_id, self.window, metadata)
            crash_point("created")
            return batch
        except ProviderApiError as exc:
            if exc.transient:
                found = await self._find_batch(file_id)
                if found is not None:
                    return found
            raise

    async def _find_file(self, chunk: Chunk) -> str | None:
        after = None
        for _ in range(_SEARCH_PAGES):
            page = await self.api.list_files(after)
            for f in page.get("data") or ():
                if f.get("filename") == chunk.name and f.get("bytes") in (None, chunk.bytes):
                    return str(f["id"])
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]
        return None

    async def _find_batch(self, file_id: str) -> dict[str, Any] | None:
        after = None
        for _ in range(_SEARCH_PAGES):
            page = await self.api.list_batches(after)
            for b in page.get("data") or ():
                if b.get("input_file_id") == file_id:
                    return dict(b)
            if not page.get("has_more") or not page.get("data"):
                return None
            after = page["data"][-1]["id"]
        return None

    # -- collect ----------------------------------------------------------------------

    async def _collect(self, chunk: Chunk, batch: dict[str, Any]) -> None:
        if batch.get("status") != "completed":
            errors = (batch.get("errors") or {}).get("data") or []
            why = "; ".join(str(e.get("message")) for e in errors[:3] if isinstance(e, dict))
            self.warn(f"{batch['id']} ended {batch.get('status')}" + (f": {why}" if why else ""))
        paths: list[tuple[str, Path]] = []
        for kind in ("output", "error"):
            file_id = batch.get(f"{kind}_file_id")
            if file_id:
                path = Path(f"{self.output}.provider-batch.{chunk.id}.{kind}.jsonl")
                await self._patient(partial(self.api.download, file_id, path))
                paths.append((f"{kind} file {file_id}", path))
                crash_point("downloaded")
        got = Collected()
        with self.state.transaction():  # the cache is written before the commit: redone if killed
            for label, path in paths:
                collect_file(self.state, chunk.id, path, label, self.secret, got, self.cache)
            self.state.set_collected(chunk.id)
        missing, first = self.state.missing(chunk.id)
        if missing and batch.get("status") == "completed":  # expired/cancelled: expected
            more = f" and {missing - len(first)} more" if missing > len(first) else ""
            self.warn(
                f"{batch['id']}: {missing:,} requests are in neither its output nor its error "
                f"file: {', '.join(map(repr, first))}{more} (to be sent again)"
            )
        if got.cache_error is not None:
            self.warn(f"answers of {batch['id']} were not all cached: {got.cache_error}")
        self.collected[chunk.id] = got
        crash_point("collected")
        for _, path in paths:
            path.unlink(missing_ok=True)
        for problem in got.problems:
            self.warn(f"{batch['id']}: {problem}")
        if got.problem_count > len(got.problems):
            self.warn(f"{batch['id']}: ... and {got.problem_count - len(got.problems)} more")
        self.write()
