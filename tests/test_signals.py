"""Real signals to a child process running a cached batch: Ctrl-C (SIGINT) from asyncio
and sync code, and SIGTERM once ``install_sigterm_handler()`` made it act like Ctrl-C.
The process exits within 2 s of the signal and every answer received before it is in
the cache."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import minimallm
from minimallm import UsageError
from minimallm.mock import MockServerConfig, MockServerThread

CHILD = Path(__file__).with_name("_signal_child.py")
IN_FLIGHT = 8  # the child's max_outstanding: answers that may be on the wire at the signal

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="POSIX signals")


def rows_on_disk(cache_dir: Path) -> int:
    with sqlite3.connect(cache_dir / "minima_llm.db") as db:
        count: int = db.execute("SELECT count(*) FROM cache").fetchone()[0]
    return count


def interrupt(
    tmp_path: Path, mode: str, sig: signal.Signals, *extra: str
) -> tuple[float, int, int, subprocess.CompletedProcess[str]]:
    """Start the child, let it get 300 answers, send ``sig``; (seconds to exit,
    answers the server had finished at the signal, rows on disk, the outcome)."""
    # latency 0: answers arrive as fast as the writer can take them (what made the
    # bridge thread hang at exit)
    with MockServerThread(MockServerConfig(latency_s=0.0)) as mock:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), mock.base_url, str(tmp_path), mode, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "started"
        assert mock.wait_for(lambda s: s.requests_total >= 300, 30.0)
        stats = mock.stats
        answered = stats.requests_total - stats.in_flight
        sent_at = time.monotonic()
        os.kill(proc.pid, sig)
        try:
            out, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise
        elapsed = time.monotonic() - sent_at
    done = subprocess.CompletedProcess(proc.args, proc.returncode, out, err)
    return elapsed, answered, rows_on_disk(tmp_path), done


@pytest.mark.realtime
@pytest.mark.parametrize("mode", ["asyncio", "sync"])
def test_ctrl_c_exits_promptly_and_loses_no_answer(tmp_path: Path, mode: str) -> None:
    elapsed, answered, rows, done = interrupt(tmp_path, mode, signal.SIGINT)
    assert done.returncode == 130 and "interrupted" in done.stdout, done.stderr
    assert elapsed < 2.0
    assert rows >= answered - IN_FLIGHT


@pytest.mark.realtime
@pytest.mark.parametrize("mode", ["asyncio", "sync"])
def test_sigterm_acts_like_ctrl_c_once_the_handler_is_installed(tmp_path: Path, mode: str) -> None:
    elapsed, answered, rows, done = interrupt(tmp_path, mode, signal.SIGTERM, "sigterm")
    assert done.returncode == 130 and "interrupted" in done.stdout, done.stderr
    assert elapsed < 2.0
    assert rows >= answered - IN_FLIGHT


def test_install_sigterm_handler_is_idempotent_and_returns_the_previous_handler() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    original = signal.getsignal(signal.SIGTERM)
    try:
        previous = minimallm.install_sigterm_handler()
        assert previous is original
        installed = signal.getsignal(signal.SIGTERM)
        assert minimallm.install_sigterm_handler() is installed  # nothing changes
        assert signal.getsignal(signal.SIGTERM) is installed
    finally:
        signal.signal(signal.SIGTERM, original)


def test_sigterm_raises_keyboard_interrupt_when_sigint_is_ignored() -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("needs the main thread")
    original_term = signal.getsignal(signal.SIGTERM)
    original_int = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        minimallm.install_sigterm_handler()
        with pytest.raises(KeyboardInterrupt):
            signal.raise_signal(signal.SIGTERM)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
    finally:
        signal.signal(signal.SIGTERM, original_term)
        signal.signal(signal.SIGINT, original_int)


def test_install_sigterm_handler_off_the_main_thread_is_a_clear_error() -> None:
    errors: list[BaseException] = []

    def other() -> None:
        try:
            minimallm.install_sigterm_handler()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=other)
    thread.start()
    thread.join()
    assert len(errors) == 1 and isinstance(errors[0], UsageError)
    assert "main thread" in str(errors[0])
