"""``minimallm serve`` in a child process, for tests and benchmarks.

``with ServeProcess(env) as serve: serve.base_url ...``: starts ``python -m minimallm
serve --port 0`` with ``env`` (the upstream settings), waits for the line naming its
URL, keeps its stderr; leaving the block sends SIGTERM and waits (``returncode``).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Self

ANNOUNCE = re.compile(r"minimallm serve: listening on (http://\S+/v1)")


class ServeProcess:
    """A ``minimallm serve`` child process on a free loopback port."""

    def __init__(
        self, env: Mapping[str, str], args: Sequence[str] = (), *, timeout_s: float = 30.0
    ) -> None:
        self.env = {**os.environ, **env}
        self.args = list(args)
        self.timeout_s = timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self.base_url = ""
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None
        self._announced = threading.Event()

    @property
    def stderr(self) -> str:
        """Everything the child wrote to stderr so far."""
        return "".join(self.lines)

    def start(self) -> Self:
        argv = [sys.executable, "-m", "minimallm", "serve", "--port", "0", *self.args]
        self.proc = subprocess.Popen(
            argv, env=self.env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        if not self._announced.wait(self.timeout_s) or not self.base_url:
            self.stop()
            raise RuntimeError(f"minimallm serve did not start:\n{self.stderr}")
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)
            match = ANNOUNCE.search(line)
            if match and not self.base_url:
                self.base_url = match[1]
                self._announced.set()
        self._announced.set()

    def terminate(self) -> None:
        """Send SIGTERM (drain) without waiting."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        """Wait for the child to exit; its status."""
        assert self.proc is not None
        try:
            code = self.proc.wait(self.timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        if self._reader is not None:
            self._reader.join(5)
        return code

    def stop(self) -> int:
        """SIGTERM and wait (idempotent); the exit status."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.terminate()
        return self.wait()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
