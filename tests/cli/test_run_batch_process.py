"""`run-batch` stopped by real signals, or run twice at once, against the mock in its
own process (issue 19): every rerun ends with every line exactly once, in input order,
byte-identical to an uninterrupted run.

The input's line 0 asks the mock to hang on its first attempt (``#mock:fault=hang``),
so OUTPUT stays empty while every other answer arrives: exactly the answers a run
used to lose on Ctrl-C without a cache. The prompts have seeded random lengths (the
mock echoes them), so lines interleaved by two writers could not go unnoticed.
"""

from __future__ import annotations

import json
import os
import random
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minimallm.mock.cli import ANNOUNCE_PREFIX

N = 300
DEADLINE_S = 60.0


def prompt(i: int, rng: random.Random) -> str:
    text = f"line {i}: " + "tide " * rng.randrange(0, 200)
    return text + " #mock:fault=hang" if i == 0 else text


@pytest.fixture(scope="module")
def mock_url() -> Iterator[str]:
    """`minimallm mock` in a child process; yields its base URL."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "minimallm", "mock", "--port", "0", "--latency", "0.005",
         "--deterministic"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        with selectors.DefaultSelector() as sel:
            sel.register(proc.stdout, selectors.EVENT_READ)
            assert sel.select(30), "the mock did not announce itself within 30 s"
        line = proc.stdout.readline()
        assert line.startswith(ANNOUNCE_PREFIX), line
        yield line.removeprefix(ANNOUNCE_PREFIX).strip()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def requests_total(url: str) -> int:
    with urllib.request.urlopen(url.removesuffix("/v1") + "/mock/stats", timeout=10) as r:
        return int(json.load(r)["requests_total"])


def reset(url: str) -> None:
    req = urllib.request.Request(url.removesuffix("/v1") + "/mock/reset", method="POST")
    urllib.request.urlopen(req, timeout=10).close()


@pytest.fixture(scope="module")
def inp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = random.Random(19)
    path = tmp_path_factory.mktemp("stops") / "in.jsonl"
    rows = [
        {"custom_id": f"q{i}", "messages": [{"role": "user", "content": prompt(i, rng)}]}
        for i in range(N)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def command(inp: Path, out: Path, url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "minimallm", "run-batch", str(inp), "-o", str(out),
        "--base-url", url, "--model", "mock-model", "--rpm", "0", "--workers", "32",
        "--max-outstanding", "32", "--no-cache", *extra,
    ]  # fmt: skip


def env() -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCH_"))}
    e["MINIMALLM_PROGRESS"] = "lines"
    return e


def start(
    argv: list[str], log: Path, preexec: Callable[[], object] | None = None
) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, env=env(),
            preexec_fn=preexec,
        )  # fmt: skip


@pytest.fixture(scope="module")
def reference(inp: Path, mock_url: str) -> bytes:
    """OUTPUT of one uninterrupted run (line 0 hangs 1 s, then is answered)."""
    reset(mock_url)
    out = inp.parent / "reference.jsonl"
    log = inp.parent / "reference.log"
    rc = start(command(inp, out, mock_url, "--timeout", "1"), log).wait(DEADLINE_S)
    assert rc == 0, log.read_text()
    return out.read_bytes()


def ids(data: bytes) -> list[str]:
    return [json.loads(line)["custom_id"] for line in data.splitlines()]


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        assert proc.poll() is None, f"run-batch exited ({proc.returncode}) before {what}"
        assert time.monotonic() < deadline, f"no {what} within {DEADLINE_S} s"
        time.sleep(0.02)


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a non-interactive shell


def test_reference_has_every_line_once_in_order(reference: bytes) -> None:
    assert ids(reference) == [f"q{i}" for i in range(N)]


@pytest.mark.parametrize(
    ("sig", "preexec"),
    [
        (signal.SIGTERM, ignore_sigint),
        (signal.SIGHUP, ignore_sigint),
        (signal.SIGINT, None),
        (signal.SIGTERM, None),
    ],
    ids=["SIGTERM-sigint-ignored", "SIGHUP-sigint-ignored", "ctrl-c", "SIGTERM"],
)
def test_a_stopped_run_keeps_every_answer_and_the_rerun_sends_only_the_rest(
    reference: bytes,
    inp: Path,
    mock_url: str,
    tmp_path: Path,
    sig: signal.Signals,
    preexec: Callable[[], object] | None,
) -> None:
    reset(mock_url)
    out, log = tmp_path / "out.jsonl", tmp_path / "log"
    argv = command(inp, out, mock_url, "--timeout", "60")  # line 0 hangs for good
    proc = start(argv, log, preexec)
    half = N // 2
    wait_for(lambda: requests_total(mock_url) >= half, proc, f"{half} requests")
    proc.send_signal(sig)
    sent_at = time.monotonic()
    rc = proc.wait(DEADLINE_S)
    took = time.monotonic() - sent_at
    text = log.read_text()
    assert rc == 130, text
    assert "Traceback" not in text and "Trio" not in text, text
    last = text.rstrip().splitlines()[-1]
    m = re.fullmatch(
        rf"minimallm run-batch: interrupted by {sig.name}; 0 of {N} requests written \(0 by "
        rf"this run\); (\d+) more received and kept in {re.escape(str(out))}\.pending "
        r"\(written in their place by the next run\); run the same command again to resume",
        last,
    )
    assert m, last
    kept = int(m[1])
    assert kept >= half - 32 - 1
    assert out.read_bytes() == b""
    pending = (tmp_path / "out.jsonl.pending").read_bytes().splitlines()
    assert len(pending) == kept
    assert not (tmp_path / "out.jsonl.lock").exists()
    assert took < 10  # an orderly stop, not a hang (the bound under load; ~0.1 s idle)
    # The rerun asks the server only for the lines never answered.
    before = requests_total(mock_url)
    rc = start(argv, log).wait(DEADLINE_S)
    assert rc == 0, log.read_text()
    assert requests_total(mock_url) - before == N - kept
    assert f"{kept:,} more kept in {out}.pending by the last run" in log.read_text()
    assert out.read_bytes() == reference
    assert not (tmp_path / "out.jsonl.pending").exists()


@pytest.mark.realtime
def test_sigterm_with_sigint_ignored_exits_within_a_second(
    inp: Path, mock_url: str, tmp_path: Path
) -> None:
    reset(mock_url)
    out, log = tmp_path / "out.jsonl", tmp_path / "log"
    proc = start(command(inp, out, mock_url, "--timeout", "60"), log, ignore_sigint)
    wait_for(lambda: requests_total(mock_url) >= N, proc, "every request sent")
    proc.send_signal(signal.SIGTERM)
    sent_at = time.monotonic()
    assert proc.wait(DEADLINE_S) == 130
    assert time.monotonic() - sent_at < 1.0
    assert "interrupted by SIGTERM" in log.read_text()


def test_a_second_run_on_the_same_output_refuses_at_once(
    reference: bytes, inp: Path, mock_url: str, tmp_path: Path
) -> None:
    reset(mock_url)
    out, log1, log2 = tmp_path / "out.jsonl", tmp_path / "log1", tmp_path / "log2"
    argv = command(inp, out, mock_url, "--timeout", "6")  # line 0: 6 s, then answered
    first = start(argv, log1)
    wait_for(lambda: requests_total(mock_url) >= 10, first, "the first run sending")
    sent = requests_total(mock_url)
    second = start(argv, log2)
    assert second.wait(DEADLINE_S) == 2
    text = log2.read_text()
    host = socket.gethostname()
    assert text == (
        f"minimallm run-batch: {out} is being written by another run-batch (pid "
        f"{first.pid} on {host}): wait for it to finish or stop it, or choose another "
        "output file\n"
    )
    assert first.poll() is None  # still running: the refusal came at once
    assert first.wait(DEADLINE_S) == 0, log1.read_text()
    assert requests_total(mock_url) - sent <= N  # the second sent nothing
    assert out.read_bytes() == reference
    assert not (tmp_path / "out.jsonl.lock").exists()
    # Both at once again, now that there is nothing left: neither corrupts anything.
    procs = [start(argv, tmp_path / f"again{i}") for i in range(2)]
    codes = sorted(p.wait(DEADLINE_S) for p in procs)
    assert codes[0] == 0 and codes[1] in (0, 2)
    assert out.read_bytes() == reference


def small_input(path: Path, n: int, faults: dict[int, str]) -> Path:
    rows = []
    for i in range(n):
        text = f"short {i} " + "x" * (i % 13) + (f" #mock:fault={faults[i]}" if i in faults else "")
        rows.append({"custom_id": f"s{i}", "messages": [{"role": "user", "content": text}]})
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def answers(out: Path) -> list[tuple[str, str]]:
    rows = [json.loads(line) for line in out.read_bytes().splitlines()]
    return [
        (row["custom_id"], row["response"]["body"]["choices"][0]["message"]["content"])
        for row in rows
    ]


def test_retry_failed_sends_the_failures_again_and_puts_the_answers_in_order(
    mock_url: str, tmp_path: Path
) -> None:
    reset(mock_url)
    n = 60
    inp = small_input(tmp_path / "in.jsonl", n, {5: "400*1", 17: "400*1", 40: "400*1"})
    out, errors, log = tmp_path / "out.jsonl", tmp_path / "out.errors.jsonl", tmp_path / "log"
    argv = command(inp, out, mock_url, "--max-failures", "none")
    assert start(argv, log).wait(DEADLINE_S) == 1, log.read_text()
    assert ids(errors.read_bytes()) == ["s5", "s17", "s40"]
    assert len(ids(out.read_bytes())) == n - 3
    # without the flag, the failures stay: resuming sends nothing
    before = requests_total(mock_url)
    assert start(argv, log).wait(DEADLINE_S) == 1
    assert requests_total(mock_url) == before
    assert start([*argv, "--retry-failed"], log).wait(DEADLINE_S) == 0, log.read_text()
    assert requests_total(mock_url) - before == 3  # only the failed lines
    text = log.read_text()
    assert f"minimallm run-batch: retrying the 3 failed requests of {errors}" in text
    assert text.rstrip().endswith(f"done: {n} answers in {out}")
    assert answers(out) == [
        (f"s{i}", "echo: " + json.loads(row)["messages"][0]["content"])
        for i, row in enumerate(inp.read_text().splitlines())
    ]
    assert errors.read_bytes() == b""
    assert not (tmp_path / "out.jsonl.pending").exists()


def test_a_run_where_every_request_fails_alike_records_no_line_failures(
    mock_url: str, tmp_path: Path
) -> None:
    n = 40
    inp = small_input(tmp_path / "in.jsonl", n, {})
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/v1"
    out, errors, log = tmp_path / "out.jsonl", tmp_path / "out.errors.jsonl", tmp_path / "log"
    rc = start(command(inp, out, dead, "--max-attempts", "1"), log).wait(DEADLINE_S)
    text = log.read_text()
    assert rc == 1, text
    assert "every request failed" in text
    assert "check --base-url: is the server running" in text  # the flag used, not the variable
    assert re.search(r"the \d+ failures of this run are not recorded: fix the cause", text)
    # not "run the same command again": it would fail the same way
    assert text.rstrip().endswith("; fix the cause, then run the command again to resume"), text
    assert size_of(errors) == 0 and size_of(out) == 0
    # fixed: the same command with the right URL answers every line
    assert start(command(inp, out, mock_url), log).wait(DEADLINE_S) == 0, log.read_text()
    assert [cid for cid, _ in answers(out)] == [f"s{i}" for i in range(n)]


def size_of(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def test_resume_refuses_a_line_changed_after_its_answer_was_written(
    mock_url: str, tmp_path: Path
) -> None:
    inp = small_input(tmp_path / "in.jsonl", 20, {})
    out, log = tmp_path / "out.jsonl", tmp_path / "log"
    argv = command(inp, out, mock_url)
    assert start(argv, log).wait(DEADLINE_S) == 0, log.read_text()
    assert (tmp_path / "out.jsonl.hashes").stat().st_size == 20 * 33
    rows = inp.read_text().splitlines()
    rows[3] = rows[3].replace("short 3", "a new question")
    inp.write_text("\n".join(rows) + "\n")
    before = out.read_bytes()
    assert start(argv, log).wait(DEADLINE_S) == 2
    assert (
        log.read_text()
        .rstrip()
        .endswith(
            f"cannot resume: 1 request(s) of {inp} changed since an earlier run wrote their "
            "results: line 4 ('s3'); use --overwrite to start over, or choose another output "
            "file (or restore the lines)"
        )
    )
    assert out.read_bytes() == before
    assert start([*argv, "--overwrite"], log).wait(DEADLINE_S) == 0
    assert answers(out)[3] == ("s3", "echo: " + json.loads(rows[3])["messages"][0]["content"])


def test_a_key_echoed_in_an_answer_never_reaches_output(mock_url: str, tmp_path: Path) -> None:
    key = "sk-echo-me-0123456789abcdef"
    inp = tmp_path / "in.jsonl"
    rows = [{"custom_id": "a", "messages": [{"role": "user", "content": f"my key is {key}"}]}]
    inp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out, log = tmp_path / "out.jsonl", tmp_path / "log"
    with log.open("ab") as err:
        rc = subprocess.run(
            command(inp, out, mock_url), stderr=err, env={**env(), "OPENAI_API_KEY": key},
            timeout=DEADLINE_S, check=False,
        ).returncode  # fmt: skip
    assert rc == 0, log.read_text()
    assert key.encode() not in out.read_bytes()
    assert answers(out) == [("a", "echo: my key is ***")]


@pytest.mark.realtime
def test_a_second_ctrl_c_during_the_orderly_stop_exits_at_once(
    reference: bytes, inp: Path, mock_url: str, tmp_path: Path
) -> None:
    """The orderly stop waits for the cache's final commit; another process holds the
    cache's write lock, so that stop would take minutes (SQLite's 30 s busy timeout,
    then retries). A second Ctrl-C ends it at once, saying what may be lost."""
    import sqlite3

    from minimallm._cache.store import PromptCache

    reset(mock_url)
    out, log, cache = tmp_path / "out.jsonl", tmp_path / "log", tmp_path / "cache"
    PromptCache.open(cache).close()
    argv = command(inp, out, mock_url, "--timeout", "60")
    argv[argv.index("--no-cache")] = f"--cache-dir={cache}"
    holder = sqlite3.connect(cache / "minima_llm.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, held for the whole stop
    proc = start(argv, log)
    try:
        wait_for(lambda: requests_total(mock_url) >= N // 2, proc, f"{N // 2} requests")
        proc.send_signal(signal.SIGINT)
        # trio coalesces a signal repeated before it is read: a person's second Ctrl-C
        # comes later than that; so does this one
        time.sleep(1.0)
        assert proc.poll() is None, log.read_text()  # the orderly stop is stuck
        proc.send_signal(signal.SIGINT)
        sent_at = time.monotonic()
        rc = proc.wait(DEADLINE_S)
        took = time.monotonic() - sent_at
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        holder.execute("ROLLBACK")
        holder.close()
    text = log.read_text()
    assert rc == 130, text
    assert took < 10, text  # without the fix: minutes (the busy timeout, then retries)
    assert "Traceback" not in text and "Trio" not in text, text
    assert text.rstrip().splitlines()[-1] == (
        "minimallm run-batch: SIGINT again: stopping at once; answers received but not "
        "yet written may be lost (run the same command again to resume)"
    )
    # the rerun resumes as after kill -9: every line once, in input order
    rc = start(argv, log).wait(DEADLINE_S)
    assert rc == 0, log.read_text()
    assert out.read_bytes() == reference
