"""`minimallm run-batch --provider-batch` end to end (issue 18) against the mock started as
a process (``minimallm mock --deterministic``, batches done in about a second).

* the same files as a live run, byte for byte (acceptance 1); the answers are cached,
  so a live run afterwards sends nothing;
* killed with SIGKILL at the narrow steps (just after an upload, a create, a download,
  a collect) and at seeded random moments, then run again: every line once, nothing
  uploaded twice (the mock counts uploads), the files of an uninterrupted run
  (acceptance 2);
* a batch that expires half-way and one cancelled half-way (by the mock, and by
  ``batch-status --cancel``): the finished lines are kept, the same command sends the
  rest, and the files end complete (acceptance 3).

Every line's outcome is the same in every run: a line either succeeds or asks for
``#mock:fault=400`` (a provider-rejected line: its failure in ERRORS).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minimallm.cli.provider_batch._drive import CRASH_ENV
from minimallm.mock import MockServerConfig, MockServerProcess

DEADLINE_S = 120.0
FAST = ["--poll-min", "0.05", "--poll-max", "0.2"]


def write_input(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            text = f"passage {i}: is it about tides? é"
            if i % 97 == 5:
                text += " #mock:fault=400*1000"  # every live attempt too
            if i % 2:
                row = {"custom_id": f"q{i}", "messages": [{"role": "user", "content": text}]}
            else:
                body = {"messages": [{"role": "user", "content": text}], "max_tokens": 16}
                row = {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
                       "body": body}  # fmt: skip
            f.write(json.dumps(row) + "\n")
    return path


def mock_process(**changes: object) -> MockServerProcess:
    settings: dict[str, object] = {"deterministic": True, "batch_duration_s": 1.0}
    return MockServerProcess(MockServerConfig(**{**settings, "max_records": 0, **changes}))  # type: ignore[arg-type]


def counters(mock: MockServerProcess) -> dict[str, int]:
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=10)
    try:
        conn.request("GET", "/mock/batches")
        return dict(json.loads(conn.getresponse().read()))
    finally:
        conn.close()


def command(inp: Path, out: Path, mock: MockServerProcess, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "minimallm", "run-batch", str(inp), "-o", str(out),
        "--base-url", mock.base_url, "--model", "mock-model", "--rpm", "0", "--no-cache",
        "--workers", "32", "--max-outstanding", "32", "--max-failures", "none", *extra,
    ]  # fmt: skip


def child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCH_"))}
    env["MINIMALLM_PROGRESS"] = "lines"
    env.pop(CRASH_ENV, None)
    env.update(extra)
    return env


_children: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_child_left_behind() -> Iterator[None]:
    yield
    while _children:
        proc = _children.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(argv: list[str], log: Path, **env: str) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env=child_env(**env),
        )  # fmt: skip
    _children.append(proc)
    return proc


def run(argv: list[str], log: Path, **env: str) -> int:
    return start(argv, log, **env).wait(DEADLINE_S)


def pair(out: Path) -> tuple[bytes, bytes]:
    errors = out.with_name(out.name.removesuffix(".jsonl") + ".errors.jsonl")
    return out.read_bytes(), errors.read_bytes() if errors.exists() else b""


def every_line_once(out: Path, n: int) -> None:
    ok, bad = pair(out)
    ids = [json.loads(line)["custom_id"] for line in (ok + bad).splitlines()]
    assert sorted(ids) == sorted(f"q{i}" for i in range(n))


# -- acceptance 1 -------------------------------------------------------------------------


@pytest.mark.slow
def test_10000_lines_end_byte_identical_to_a_live_run_and_are_cached(tmp_path: Path) -> None:
    n = 10_000
    inp = write_input(tmp_path / "in.jsonl", n)
    log = tmp_path / "log"
    with mock_process() as mock:
        assert run(command(inp, tmp_path / "live.jsonl", mock), log) == 1, log.read_text()
        cache = ["--cache-dir", str(tmp_path / "cache")]
        pb = command(inp, tmp_path / "pb.jsonl", mock, "--provider-batch", *FAST, *cache)
        pb.remove("--no-cache")
        assert run(pb, log) == 1, log.read_text()  # 1: the 400 lines failed
        assert pair(tmp_path / "pb.jsonl") == pair(tmp_path / "live.jsonl")
        assert b"mock fault: injected HTTP 400" in pair(tmp_path / "pb.jsonl")[1]
        assert counters(mock)["upload_lines"] == n
        chats = mock.stats.requests_total
        again = command(inp, tmp_path / "again.jsonl", mock, *cache)
        again.remove("--no-cache")
        assert run(again, log) == 1, log.read_text()
        assert mock.stats.requests_total - chats == n // 97 + 1  # only the failures again
        assert pair(tmp_path / "again.jsonl") == pair(tmp_path / "live.jsonl")


def test_a_small_file_ends_byte_identical_to_a_live_run(tmp_path: Path) -> None:
    n = 600
    inp = write_input(tmp_path / "in.jsonl", n)
    log = tmp_path / "log"
    with mock_process(batch_duration_s=0.3) as mock:
        assert run(command(inp, tmp_path / "live.jsonl", mock), log) == 1, log.read_text()
        pb = command(inp, tmp_path / "pb.jsonl", mock, "--provider-batch", "--batch-max-lines",
                     "250", *FAST)  # fmt: skip
        assert run(pb, log) == 1, log.read_text()
        assert pair(tmp_path / "pb.jsonl") == pair(tmp_path / "live.jsonl")
        assert counters(mock) == {
            "uploads": 3, "upload_lines": n, "batches_created": 3, "downloads": 6,
        }  # fmt: skip
        text = log.read_text()
        assert "validating 0/250" in text and "completed 250/250 (3 failed)" in text, text
        # Done: the same command again changes nothing and uploads nothing.
        assert run(pb, log) == 1
        assert pair(tmp_path / "pb.jsonl") == pair(tmp_path / "live.jsonl")
        assert counters(mock)["uploads"] == 3


# -- acceptance 2 -------------------------------------------------------------------------

N_KILL = 1500


@pytest.fixture(scope="module")
def kill_reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes, bytes]:
    work = tmp_path_factory.mktemp("provider_batch_kills")
    inp = write_input(work / "in.jsonl", N_KILL)
    with mock_process() as mock:
        out = work / "reference.jsonl"
        assert run(command(inp, out, mock), work / "log") == 1
    ok, bad = pair(out)
    return inp, ok, bad


@pytest.fixture(scope="module")
def kill_mock() -> Iterator[MockServerProcess]:
    """One mock for the kill tests (each reads the counters' change)."""
    with mock_process(batch_duration_s=0.6) as mock:
        yield mock


def uploaded_by(mock: MockServerProcess, before: dict[str, int]) -> tuple[int, int, int]:
    """(files, lines, batches) made since ``before``."""
    now = counters(mock)
    return tuple(now[k] - before[k] for k in ("uploads", "upload_lines", "batches_created"))  # type: ignore[return-value]


def kill_argv(inp: Path, out: Path, mock: MockServerProcess) -> list[str]:
    return command(inp, out, mock, "--provider-batch", "--batch-max-lines", "500", *FAST)


@pytest.mark.parametrize("point", ["uploaded", "created", "downloaded", "collected"])
def test_sigkill_at_each_narrow_step_then_rerun_uploads_nothing_twice(
    tmp_path: Path,
    kill_reference: tuple[Path, bytes, bytes],
    kill_mock: MockServerProcess,
    point: str,
) -> None:
    inp, ok, bad = kill_reference
    out = tmp_path / "out.jsonl"
    log = tmp_path / "log"
    before = counters(kill_mock)
    argv = kill_argv(inp, out, kill_mock)
    assert run(argv, log, **{CRASH_ENV: point}) == -signal.SIGKILL
    assert run(argv, log) == 1, log.read_text()
    assert pair(out) == (ok, bad)
    every_line_once(out, N_KILL)
    assert uploaded_by(kill_mock, before) == (3, N_KILL, 3)


def test_sigkill_at_seeded_random_moments_then_rerun(
    tmp_path: Path, kill_reference: tuple[Path, bytes, bytes]
) -> None:
    """Kills at seeded random moments once the child has begun its provider batch (its
    first line, so that start-up on a loaded machine does not eat the delay), until a
    run ends by itself. The batches take 5 s, so at least two runs are killed however
    slow start-up is; on an idle machine the kills land in uploads, polls and
    downloads alike (the deterministic windows are the test above)."""
    inp, ok, bad = kill_reference
    out = tmp_path / "out.jsonl"
    log = tmp_path / "log"
    rng = random.Random(18)
    kills: list[dict[str, int]] = []
    with mock_process(batch_duration_s=5.0) as mock:
        argv = kill_argv(inp, out, mock)
        for _ in range(20):
            began = log.read_text().count("provider batch:") if log.exists() else 0
            proc = start(argv, log)
            deadline = time.monotonic() + DEADLINE_S
            while proc.poll() is None and log.read_text().count("provider batch:") == began:
                assert time.monotonic() < deadline
                time.sleep(0.01)
            try:
                proc.wait(rng.uniform(0.0, 0.8))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                kills.append(counters(mock))
                continue
            break
        assert run(argv, log) == 1, log.read_text()  # and once more, whatever happened
        steps = [(c["uploads"], c["batches_created"], c["downloads"]) for c in kills]
        print("(uploads, batches, downloads) at each kill:", steps)
        assert len(kills) >= 2, steps
        assert pair(out) == (ok, bad)
        every_line_once(out, N_KILL)
        c = counters(mock)
        assert (c["uploads"], c["upload_lines"], c["batches_created"]) == (3, N_KILL, 3), c


# -- acceptance 3 -------------------------------------------------------------------------


@pytest.mark.parametrize("outcome", ["1=expired@0.5", "1=cancelled@0.5", "2=failed"])
def test_a_batch_that_ends_early_keeps_its_lines_and_the_rest_is_sent_again(
    tmp_path: Path, kill_reference: tuple[Path, bytes, bytes], outcome: str
) -> None:
    inp, ok, bad = kill_reference
    out = tmp_path / "out.jsonl"
    log = tmp_path / "log"
    with mock_process(batch_duration_s=0.3, batch_outcomes=(outcome,)) as mock:
        argv = kill_argv(inp, out, mock)
        assert run(argv, log) == 1
        text = log.read_text()
        assert "not answered" in text and "run the same command again" in text, text
        first_ok, first_bad = pair(out)
        kept = len(first_ok.splitlines()) + len(first_bad.splitlines())
        if outcome.startswith("1="):
            assert kept == 250  # half of the first file, in input order
        else:
            assert kept == 500  # the first file; the second failed, the third waits
        assert ok.startswith(first_ok) and bad.startswith(first_bad)
        assert run(argv, log) == 1, log.read_text()
        assert "sending" in log.read_text()
        assert pair(out) == (ok, bad)
        every_line_once(out, N_KILL)
        c = counters(mock)
        resent = 250 if outcome.startswith("1=") else 500
        assert c["upload_lines"] == N_KILL + resent, c
        assert c["uploads"] == 4, c


def test_batch_status_shows_the_batches_and_cancel_stops_them(
    tmp_path: Path, kill_reference: tuple[Path, bytes, bytes]
) -> None:
    inp, ok, bad = kill_reference
    out = tmp_path / "out.jsonl"
    log = tmp_path / "log"
    state = Path(str(out) + ".provider-batch.db")
    with mock_process(batch_duration_s=20.0) as mock:
        argv = kill_argv(inp, out, mock)
        proc = start(argv, log)
        deadline = time.monotonic() + DEADLINE_S
        while counters(mock)["batches_created"] < 3:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        status = [sys.executable, "-m", "minimallm", "batch-status", str(out)]
        env = child_env(OPENAI_API_KEY="sk-test-secret")
        shown = subprocess.run(status, capture_output=True, text=True, env=env, timeout=60)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.count("batch-mock") == 3 and "sk-test" not in shown.stdout
        cancel = subprocess.run([*status, "--cancel"], capture_output=True, text=True, env=env,
                                timeout=60)  # fmt: skip
        assert cancel.returncode == 0, cancel.stderr
        assert "cancel" in cancel.stdout, cancel.stdout
        assert proc.wait(DEADLINE_S) == 1, log.read_text()
        assert state.exists()
        assert "cancelled" in log.read_text()
    with mock_process(batch_duration_s=0.3) as mock:
        # Every batch is over (cancelled): the same command sends the rest, here to
        # another mock (nothing refers to the first one's batches any more).
        assert run(kill_argv(inp, out, mock), log) == 1, log.read_text()
        assert pair(out) == (ok, bad)
        every_line_once(out, N_KILL)


def test_cache_hits_are_written_at_once_and_not_uploaded(tmp_path: Path) -> None:
    n = 300
    inp = write_input(tmp_path / "in.jsonl", n)
    log = tmp_path / "log"
    failing = sum(1 for i in range(n) if i % 97 == 5)
    with mock_process(batch_duration_s=0.3) as mock:
        argv = command(inp, tmp_path / "a.jsonl", mock, "--provider-batch", *FAST,
                       "--cache-dir", str(tmp_path / "cache"))  # fmt: skip
        argv.remove("--no-cache")
        assert run(argv, log) == 1, log.read_text()
        before = counters(mock)
        argv[argv.index(str(tmp_path / "a.jsonl"))] = str(tmp_path / "b.jsonl")
        assert run(argv, log) == 1, log.read_text()
        assert pair(tmp_path / "b.jsonl") == pair(tmp_path / "a.jsonl")
        after = counters(mock)
        assert after["upload_lines"] - before["upload_lines"] == failing  # failures are not cached
        assert f"{n - failing:,} answered already" in log.read_text()
