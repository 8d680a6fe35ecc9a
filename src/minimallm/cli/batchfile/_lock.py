"""One ``run-batch`` per OUTPUT: an exclusive lock taken before anything is read or cut.

Two runs appending to one OUTPUT (a second terminal, a re-submitted job) would
interleave their lines: broken JSON, duplicates, lines out of order. So a run holds
``fcntl.flock`` on a lock file beside OUTPUT (``OUTPUT.lock``) for its whole life;
a second run finds it held and stops at once, naming the holder (pid and host, which
the holder writes into the file). ``flock`` is released by the kernel when the
process dies, even by ``kill -9``: a stale lock file never blocks anybody (it holds
the old pid, but nobody holds the lock). The holder removes the file on exit; a
run that locked a file that was removed meanwhile locks the new one instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from types import TracebackType
from typing import Self

from minimallm._errors import MinimaLlmError

__all__ = ["OutputInUseError", "OutputLock", "lock_path"]


class OutputInUseError(MinimaLlmError, RuntimeError):
    """Another process holds the lock of this OUTPUT."""


def lock_path(output: str) -> str:
    """The lock file of ``output``: ``out.jsonl`` -> ``out.jsonl.lock``."""
    return output + ".lock"


class OutputLock:
    """``with OutputLock(path): ...``: the exclusive lock of OUTPUT ``path``.

    Raises :class:`OutputInUseError` at once (never waits) when another process
    holds it, and OSError when the lock file cannot be created (e.g. its directory
    is missing).
    """

    def __init__(self, output: str) -> None:
        self.output = output
        self.path = lock_path(output)
        self._fd: int | None = None

    def __repr__(self) -> str:
        return f"<OutputLock {self.path!r} held={self._fd is not None}>"

    def acquire(self) -> None:
        """Take the lock (see the class docstring)."""
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read_holder(fd)
                os.close(fd)
                raise OutputInUseError(
                    f"{self.output} is being written by another run-batch{holder}: wait "
                    "for it to finish or stop it, or choose another output file"
                ) from None
            except BaseException:
                os.close(fd)
                raise
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)  # the holder removed that file as we locked it: lock the new one
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        """Remove the lock file and release the lock. Idempotent."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still holding it: nobody else has it locked
        os.close(fd)

    def __enter__(self) -> Self:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(fd: int) -> str:
    with contextlib.suppress(OSError):
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        if text:
            return f" ({text})"
    return ""
