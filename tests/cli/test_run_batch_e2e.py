"""`minimallm run-batch` end to end (issue 11, acceptance 1): a child process
(``python -m minimallm run-batch``) against the mock server with faults.

Every line is accounted for (OUTPUT + ERRORS = input, each in input order); a run
killed with SIGKILL or SIGTERM at a random point, even twice, and run again ends with
files byte-identical to an uninterrupted run's; an aborted run flushes what it has and
resumes the same way; malformed files are refused with every bad line numbered and
nothing sent.

Byte-identical files need the same outcome per line in every run, whatever the order
requests arrive in:

* the mock answers with deterministic bodies (``MockServerConfig(deterministic=True)``:
  ``created`` 0, an id derived from the request);
* lines that must end as failures ask for it with per-prompt directives
  (``#mock:fault=500*1000``: the first 1,000 attempts of that prompt fail, more than
  all runs of this module make together; the mock counts attempts per prompt);
* random faults (``fault_rates``) are transient only: drawn per request in arrival
  order, so a rerun sees them on other lines, but with MAX_ATTEMPTS 8 a line would need
  8 faults in a row to fail (about 1e-12), so they never decide a line's outcome; they
  exercise the retries, resets and cooldowns under the kills.

A run takes 1-2 s (2,000 lines, 5 ms latency, 16 in flight).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from minimallm.cli import build_parser
from minimallm.cli._batch_send import send_job
from minimallm.cli.run_batch import Job, prepare
from minimallm.mock import MockServerConfig, MockServerThread, MockStats

N = 2000
DEADLINE_S = 60.0  # a generous bound for a child run; a healthy one takes 1-3 s

PERMANENT = {17: "400*1000", 29: "500*1000", 41: "malformed*1000"}
"""line % 97 -> the fault every attempt of that line's prompt gets."""
TRANSIENT = "500,reset,ok"
"""Lines with i % 53 == 5: two faults, then an answer (the same in every run)."""


def prompt(i: int) -> str:
    text = f"line {i}: is this passage about tides?"
    if i % 97 in PERMANENT:
        text += f" #mock:fault={PERMANENT[i % 97]}"
    elif i % 53 == 5:
        text += f" #mock:fault={TRANSIENT}"
    return text


def input_rows(n: int) -> Iterator[dict[str, object]]:
    """Both formats: the Batch API's and the simple one (with "custom_id" or "id")."""
    for i in range(n):
        messages = [{"role": "user", "content": prompt(i)}]
        if i % 3 == 0:
            body = {"model": "mock-model", "messages": messages, "max_tokens": 16}
            yield {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}  # fmt: skip  # noqa: E501
        elif i % 3 == 1:
            yield {"custom_id": f"q{i}", "messages": messages, "temperature": 0.0}
        else:
            yield {"id": f"q{i}", "messages": messages}


def expected_failures(n: int) -> set[str]:
    return {f"q{i}" for i in range(n) if i % 97 in PERMANENT}


@pytest.fixture(scope="module")
def mock() -> Iterator[MockServerThread]:
    config = MockServerConfig(
        latency_s=0.005,
        fault_rates={"500": 0.02, "reset": 0.01, "429": 0.005},
        retry_after_s=0.02,
        deterministic=True,
        max_records=0,
    )
    with MockServerThread(config) as server:
        yield server


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("run_batch_e2e")
    with (path / "in.jsonl").open("w") as f:
        for row in input_rows(N):
            f.write(json.dumps(row) + "\n")
    return path


def command(inp: Path, out: Path, base_url: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "minimallm", "run-batch", str(inp), "-o", str(out),
        "--base-url", base_url, "--model", "mock-model", "--rpm", "0",
        "--workers", "16", "--max-outstanding", "16", "--max-attempts", "8",
        "--base-backoff", "0.002", "--max-backoff", "0.01",
        "--cooldown-floor", "0", "--cooldown-cap", "0.002", "--cooldown-halflife", "0.1",
        "--max-failures", "none", "--no-cache", *extra,
    ]  # fmt: skip


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "BATCH_"))}
    env["MINIMALLM_PROGRESS"] = "lines"
    return env


_children: list[subprocess.Popen[bytes]] = []


@pytest.fixture(autouse=True)
def _no_child_left_behind() -> Iterator[None]:
    """A failed test must not leave a run-batch child running."""
    yield
    while _children:
        proc = _children.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
            env=child_env(),
        )  # fmt: skip
    _children.append(proc)
    return proc


def finish(proc: subprocess.Popen[bytes]) -> int:
    return proc.wait(DEADLINE_S)


def run(argv: list[str], log: Path) -> int:
    return finish(start(argv, log))


def wait_until(
    what: str,
    condition: Callable[[MockStats], bool],
    proc: subprocess.Popen[bytes],
    mock: MockServerThread,
    *,
    may_end: bool = False,
) -> bool:
    """Wait until ``condition(stats)`` holds, re-checked whenever the mock answers or
    gives up on a request (the child's progress); fail if the child exits first, or
    with ``may_end`` return False (True: the condition holds)."""
    deadline = time.monotonic() + DEADLINE_S
    while not mock.wait_for(lambda st: condition(st) or proc.poll() is not None, timeout_s=0.5):
        if time.monotonic() > deadline:
            pytest.fail(f"run-batch did not reach {what} within {DEADLINE_S} s")
    if proc.poll() is not None and not condition(mock.stats):
        if may_end:
            return False
        pytest.fail(f"run-batch exited ({proc.returncode}) before {what}")
    return True


def output_beyond(path: Path, size_now: int) -> Callable[[MockStats], bool]:
    return lambda _: size(path) > size_now


def requests_reach(count: int) -> Callable[[MockStats], bool]:
    return lambda stats: stats.requests_total >= count


def size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def ids(path: Path) -> list[str]:
    if not path.exists():
        return []
    return [json.loads(line)["custom_id"] for line in path.read_bytes().splitlines()]


@pytest.fixture(scope="module")
def reference(mock: MockServerThread, work: Path) -> tuple[bytes, bytes]:
    """OUTPUT and ERRORS of one uninterrupted run."""
    out = work / "reference.jsonl"
    rc = run(command(work / "in.jsonl", out, mock.base_url), work / "reference.log")
    assert rc == 1, (work / "reference.log").read_text()  # 1: some lines failed
    return out.read_bytes(), (work / "reference.errors.jsonl").read_bytes()


def test_every_line_is_accounted_for_in_input_order(
    reference: tuple[bytes, bytes], work: Path
) -> None:
    out_ids, err_ids = ids(work / "reference.jsonl"), ids(work / "reference.errors.jsonl")
    assert set(err_ids) == expected_failures(N)
    assert len(out_ids) + len(err_ids) == N and not set(out_ids) & set(err_ids)
    order = {f"q{i}": i for i in range(N)}
    assert out_ids == sorted(out_ids, key=order.__getitem__)
    assert err_ids == sorted(err_ids, key=order.__getitem__)
    for line in reference[0].splitlines():
        row = json.loads(line)
        assert row["response"]["status_code"] == 200 and row["error"] is None
        i = int(row["custom_id"][1:])
        assert row["response"]["body"]["choices"][0]["message"]["content"] == f"echo: {prompt(i)}"
    errors = {json.loads(line)["custom_id"]: json.loads(line) for line in reference[1].splitlines()}
    assert errors["q17"]["error"]["code"] == "HTTPError" and errors["q17"]["error"]["attempts"] == 1
    assert errors["q17"]["response"]["status_code"] == 400
    assert errors["q29"]["error"]["attempts"] == 8
    log = (work / "reference.log").read_text()
    assert log.rstrip().endswith(
        f"minimallm run-batch: done: {N - len(err_ids):,} answers in {work / 'reference.jsonl'}, "
        f"{len(err_ids)} failures in {work / 'reference.errors.jsonl'}"
    )


@pytest.mark.parametrize(
    ("sig", "seed"), [(signal.SIGKILL, 1), (signal.SIGTERM, 2)], ids=["SIGKILL", "SIGTERM"]
)
def test_killed_twice_at_random_points_and_rerun_ends_byte_identical(
    reference: tuple[bytes, bytes],
    mock: MockServerThread,
    work: Path,
    tmp_path: Path,
    sig: signal.Signals,
    seed: int,
) -> None:
    rng = random.Random(seed)  # the kill points, reproducibly
    out, errors, log = tmp_path / "out.jsonl", tmp_path / "out.errors.jsonl", tmp_path / "log"
    # The reruns may answer from the cache what a killed run received but had not
    # written (behind a slower line): cached answers must give the same bytes.
    argv = command(work / "in.jsonl", out, mock.base_url, "--cache-dir", str(tmp_path / "cache"))
    argv.remove("--no-cache")
    full = len(reference[0])
    for _ in range(2):
        # Kill once this run has flushed some output and the server has then answered
        # a random number of requests more (up to 60 % of the lines left), so the kill
        # lands anywhere in a flush period (256 KiB or 1 s), before the end.
        before = size(out)
        proc = start(argv, log)
        wait_until("new output", output_beyond(out, before), proc, mock)
        left = N * (1 - size(out) / full)
        more = mock.stats.requests_total + rng.randrange(int(left * 0.6) + 1)
        if not wait_until("more answers", requests_reach(more), proc, mock, may_end=True):
            # The run ended first: lines an earlier killed run had received came from
            # the cache or OUTPUT.pending without a request, so fewer were left to ask
            # than the output's size suggests. A finished run: nothing left to kill.
            assert finish(proc) == 1, log.read_text()  # the input's permanent failures
            break
        proc.send_signal(sig)
        rc = finish(proc)
        if sig == signal.SIGTERM:
            assert rc == 130, log.read_text()
            assert "minimallm run-batch: interrupted by SIGTERM; " in log.read_text()
            assert out.read_bytes().endswith(b"\n")  # an orderly stop: no torn line
        else:
            assert rc == -signal.SIGKILL
        assert before < size(out) < full
    assert run(argv, log) == 1, log.read_text()
    assert "minimallm run-batch: resuming: " in log.read_text()
    assert out.read_bytes() == reference[0]
    assert errors.read_bytes() == reference[1]


def test_an_aborted_run_keeps_what_it_wrote_and_resumes_identical(
    reference: tuple[bytes, bytes], mock: MockServerThread, work: Path, tmp_path: Path
) -> None:
    out, log = tmp_path / "out.jsonl", tmp_path / "log"
    argv = command(work / "in.jsonl", out, mock.base_url)
    argv[argv.index("--max-failures") + 1] = "3"
    assert run(argv, log) == 1
    text = log.read_text()
    # 4, or 5 when another failure lands while the 4th is being handed over
    assert re.search(
        r"^minimallm run-batch: stopped: Aborting batch: [45] failures \(max_fa", text, re.M
    )
    assert "; run the same command again to resume" in text
    # What the stream handed over before the abort is on disk, in order: a prefix of
    # an uninterrupted run's files (which prefix depends on timing).
    written, errors_written = out.read_bytes(), (tmp_path / "out.errors.jsonl").read_bytes()
    assert written and reference[0].startswith(written)
    assert errors_written and reference[1].startswith(errors_written)
    argv[argv.index("--max-failures") + 1] = "none"
    assert run(argv, log) == 1
    assert out.read_bytes() == reference[0]
    assert (tmp_path / "out.errors.jsonl").read_bytes() == reference[1]
    # Once more: nothing left to send, nothing sent, the files unchanged.
    sent = mock.stats.requests_total
    assert run(argv, log) == 1
    assert mock.stats.requests_total == sent
    assert out.read_bytes() == reference[0]
    assert (tmp_path / "out.errors.jsonl").read_bytes() == reference[1]
    assert log.read_text().rstrip().endswith(f"failures in {tmp_path / 'out.errors.jsonl'}")


def test_an_input_changed_during_the_run_stops_it_with_status_2(
    mock: MockServerThread, tmp_path: Path
) -> None:
    def line(i: int) -> str:
        return json.dumps({"custom_id": f"q{i}", "messages": [{"role": "user", "content": "hi"}]})

    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(line(i) + "\n" for i in range(40)))
    ns = build_parser().parse_args(command(inp, tmp_path / "out.jsonl", mock.base_url)[3:])
    err = io.StringIO()
    with contextlib.ExitStack() as stack:
        job = prepare(ns, stack, {}, err)
        assert isinstance(job, Job) and job.plan.total == 40
        with inp.open("a") as f:  # the file grows after it was checked
            f.write(line(40) + "\n")
        assert send_job(job, quiet=True, err=err) == 2
    text = err.getvalue()
    assert "(changed since it was checked): 1 bad line, nothing was sent:\n  edited (" in text
    assert re.search(
        r"^minimallm run-batch: (\d+) of 40 requests written \(\1 by this run\)$", text, re.M
    )


def test_stdin_to_stdout_with_failures_in_line(mock: MockServerThread, work: Path) -> None:
    rows = [json.dumps(row) for row in input_rows(120)]
    proc = subprocess.run(
        command(Path("-"), Path("-"), mock.base_url, "-q"),
        input="\n".join(rows).encode(),
        capture_output=True,
        env=child_env(),
        timeout=DEADLINE_S,
        check=False,
    )
    assert proc.returncode == 1, proc.stderr.decode()
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [row["custom_id"] for row in lines] == [f"q{i}" for i in range(120)]
    failed = {row["custom_id"] for row in lines if row["error"] is not None}
    assert failed == expected_failures(120)
    stderr = proc.stderr.decode()
    assert "[minimallm]" not in stderr  # -q: no progress lines, only the failures
    assert stderr.rstrip().endswith(
        f"done: {120 - len(failed)} answers in stdout, {len(failed)} failures in stdout"
    )


def test_malformed_files_are_refused_with_every_bad_line_numbered(
    mock: MockServerThread, tmp_path: Path
) -> None:
    good = {"custom_id": "a", "messages": [{"role": "user", "content": "hi"}]}
    chat = {"method": "POST", "url": "/v1/chat/completions"}
    rows = [
        json.dumps(good),
        "{not json",
        json.dumps({"custom_id": "b"}),
        json.dumps(good),  # duplicate custom_id "a"
        json.dumps({"custom_id": "c", **chat, "method": "GET", "body": good}),
        json.dumps({"custom_id": "d", **chat, "url": "/v1/embeddings", "body": {"input": "x"}}),
        json.dumps({"custom_id": "e", "messages": "hi"}),
    ]
    inp = tmp_path / "bad.jsonl"
    inp.write_text("\n".join(rows) + "\n")
    before = mock.stats.requests_total
    log = tmp_path / "log"
    assert run(command(inp, tmp_path / "out.jsonl", mock.base_url), log) == 2
    text = log.read_text()
    assert text.startswith(f"minimallm run-batch: {inp}: 6 bad lines, nothing was sent:\n")
    for n in (2, 3, 4, 5, 6, 7):
        assert f"\n  line {n}: " in text
    assert "\n  line 1: " not in text
    assert "duplicate custom_id 'a' (first on line 1)" in text
    assert not (tmp_path / "out.jsonl").exists()
    assert mock.stats.requests_total == before
