"""Run the mock server beside synchronous or asyncio code: in a thread or a process.

``MockServerThread`` runs its own ``trio.run`` in a background thread (tests, demos).
``MockServerProcess`` runs ``python -m minimallm.mock`` in a child process, so a
benchmark's client and server do not share a core (and a GIL).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import trio

from minimallm.mock.cli import ANNOUNCE_PREFIX, config_to_argv
from minimallm.mock.config import MockServerConfig
from minimallm.mock.records import Arrival, MockStats, RecordedRequest
from minimallm.mock.server import MockServer, serve_mock

__all__ = ["MockServerProcess", "MockServerThread"]

_URL = re.compile(re.escape(ANNOUNCE_PREFIX) + r"(http://\S+?):(\d+)/v1\s*$")


class MockServerThread:
    """A mock server in a background thread with its own ``trio.run``.

    ``with MockServerThread(MockServerConfig()) as mock: ... mock.base_url ...``.
    Leaving the block cancels the server, which closes every socket, and joins the
    thread; an error that stopped the server early is re-raised there.
    """

    def __init__(self, config: MockServerConfig | None = None, *, timeout_s: float = 10.0) -> None:
        self.config = config or MockServerConfig()
        self._timeout_s = timeout_s  # seconds, for start and stop each
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._server: MockServer | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None
        self._error: BaseException | None = None

    def start(self) -> MockServer:
        """Start the thread; return once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError("MockServerThread already started")
        self._thread = threading.Thread(target=self._run, name="minimallm-mock", daemon=True)
        self._thread.start()
        if not self._ready.wait(self._timeout_s):
            raise TimeoutError(f"mock server did not start within {self._timeout_s} s")
        if self._server is None:
            self._thread.join(self._timeout_s)
            raise RuntimeError("mock server failed to start") from self._error
        return self._server

    def stop(self) -> None:
        """Cancel the server and join the thread (idempotent)."""
        thread, token, scope = self._thread, self._token, self._scope
        if thread is None:
            return
        if token is not None and scope is not None:
            with contextlib.suppress(trio.RunFinishedError):
                trio.from_thread.run_sync(scope.cancel, trio_token=token)
        thread.join(self._timeout_s)
        if thread.is_alive():
            raise TimeoutError(f"mock server thread did not stop within {self._timeout_s} s")
        self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise RuntimeError("mock server stopped with an error") from error

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:  # reported to the caller by start() or stop()
            self._error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                self._server = await nursery.start(serve_mock, self.config)
                self._ready.set()

    @property
    def server(self) -> MockServer:
        """The running server (RuntimeError before ``start``)."""
        if self._server is None:
            raise RuntimeError("MockServerThread not started")
        return self._server

    @property
    def base_url(self) -> str:
        """e.g. ``http://127.0.0.1:PORT/v1``."""
        return self.server.base_url

    @property
    def port(self) -> int:
        """The bound TCP port."""
        return self.server.port

    @property
    def stats(self) -> MockStats:
        """A snapshot of the counters."""
        return self.server.stats

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent recorded requests, oldest first."""
        return self.server.requests

    def arrivals(self) -> list[Arrival]:
        """Chat arrivals ``(time.monotonic(), outcome)``, oldest first."""
        return self.server.arrivals()

    def reset(self) -> None:
        """Forget records, counters and fault-sequence attempts."""
        self.server.reset()

    def wait_for(self, predicate: Callable[[MockStats], bool], timeout_s: float = 5.0) -> bool:
        """Block until ``predicate(self.stats)`` holds (True) or the timeout (False)."""
        return self.server.wait_for(predicate, timeout_s)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = repr(self._server) if self._server and self._thread else "stopped"
        return f"<MockServerThread {state}>"


class MockServerProcess:
    """A mock server in a child process (``python -m minimallm.mock``).

    Waits for the child's announce line on stdout, so ``base_url`` is ready when
    ``start()`` returns; ``stop()`` sends SIGTERM, then kills after ``timeout_s``.
    ``stats`` and ``reset()`` go through the ``/mock/`` control endpoints. A custom
    responder cannot cross the process boundary (ConfigError).
    """

    def __init__(self, config: MockServerConfig | None = None, *, timeout_s: float = 20.0) -> None:
        self.config = config or MockServerConfig()
        self._argv = config_to_argv(self.config)
        self._timeout_s = timeout_s  # seconds, for start and stop each
        self._proc: subprocess.Popen[str] | None = None
        self._host = ""
        self.port = 0
        self.returncode: int | None = None
        """The child's exit status once stopped (0: it shut down cleanly on SIGTERM)."""

    @property
    def base_url(self) -> str:
        """e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self._host}:{self.port}/v1"

    @property
    def pid(self) -> int:
        """The child's process id (to measure its CPU, e.g. with psutil)."""
        if self._proc is None:
            raise RuntimeError("MockServerProcess not started")
        return self._proc.pid

    def start(self) -> Self:
        """Start the child and wait until it listens."""
        if self._proc is not None:
            raise RuntimeError("MockServerProcess already started")
        src = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        cmd = [sys.executable, "-m", "minimallm.mock", *self._argv]
        self._proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
        try:
            line = self._read_announce(self._proc)
        except BaseException:
            self.stop()
            raise
        match = _URL.match(line)
        if match is None:
            self.stop()
            raise RuntimeError(f"unexpected first line from the mock server: {line!r}")
        self._host, self.port = match.group(1), int(match.group(2))
        return self

    def _read_announce(self, proc: subprocess.Popen[str]) -> str:
        assert proc.stdout is not None
        deadline = time.monotonic() + self._timeout_s
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            while not sel.select(max(0.0, deadline - time.monotonic())):
                if time.monotonic() >= deadline:
                    raise TimeoutError(f"mock server process silent for {self._timeout_s} s")
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"mock server process exited with status {proc.wait()}")
        return line

    def stop(self) -> None:
        """SIGTERM the child, wait, kill if it lingers (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(self._timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
        self.returncode = proc.returncode

    def _call(self, method: str, path: str) -> Any:
        host = self._host.removeprefix("http://").strip("[]")
        conn = http.client.HTTPConnection(host, self.port, timeout=self._timeout_s)
        try:
            conn.request(method, path)
            response = conn.getresponse()
            return json.loads(response.read())
        finally:
            conn.close()

    @property
    def stats(self) -> MockStats:
        """The child's counters, read over HTTP."""
        return MockStats.from_dict(self._call("GET", "/mock/stats"))

    def arrivals(self) -> list[Arrival]:
        """The child's chat arrivals ``(time.monotonic(), outcome)``, oldest first (needs
        ``max_arrivals`` in the config); monotonic times compare with this process's."""
        data = self._call("GET", "/mock/arrivals")
        return [(float(t), str(kind)) for t, kind in data["arrivals"]]

    def reset(self) -> None:
        """Reset the child's records, counters and fault-sequence attempts."""
        self._call("POST", "/mock/reset")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self._proc.pid} {self.base_url}" if self._proc else "stopped"
        return f"<MockServerProcess {state}>"
