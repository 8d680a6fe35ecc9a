"""The progress display where people see it (issue 11, acceptance 3).

* The live bar in a real terminal: ``minimallm run-batch`` in a tmux pane, read back
  with ``capture-pane``: done/total, rate, ETA, failures and the binding limit (RPM set
  low, so it binds), failures printed above the bar, the summary at the end, no line
  wider than the pane. Needs tmux (Debian: ``apt-get install tmux``; ``.ci/run``
  installs it): skipped without it, unless MINIMALLM_REQUIRE_INTEGRATION=1 (CI).
* The default choice: stderr not a terminal gives plain lines, exact text in virtual
  time (what a log file or SLURM gets); MINIMALLM_PROGRESS=off gives nothing.
* The README's tqdm adapter example runs as written.
"""

from __future__ import annotations

import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
import trio.testing

from fakes import FakeServer, Script
from minimallm import BatchConfig, MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm
from minimallm._runtime.serve import RuntimeOptions
from minimallm.mock import MockServerConfig, MockServerThread

REQUIRE = os.environ.get("MINIMALLM_REQUIRE_INTEGRATION") == "1"
README = Path(__file__).resolve().parents[2] / "README.md"
WIDTH = 120
LINES = 200
RPM = 3000  # 50 requests per second: the limit that binds, for about 4 s


def tmux_binary() -> str:
    path = shutil.which("tmux")
    if path is None:
        message = (
            "tmux is not installed: the live-bar test runs minimallm in a tmux pane "
            "(Debian: apt-get install tmux; .ci/run installs it)"
        )
        if REQUIRE:
            pytest.fail(message + " [MINIMALLM_REQUIRE_INTEGRATION=1]")
        pytest.skip(message)
    return path


class Tmux:
    """A private tmux server (its own socket name) with one pane."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.binary = binary
        self.socket = f"minimallm-test-{os.getpid()}-{tmp.name}"[:80]
        self.conf = tmp / "tmux.conf"
        self.conf.write_text("set -g remain-on-exit on\nset -g history-limit 10000\n")

    def __call__(self, *args: str, timeout: float = 30.0) -> str:
        cmd = [self.binary, "-L", self.socket, "-f", str(self.conf), *args]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=True)
        return done.stdout

    def start(self, script: Path, width: int) -> None:
        self("new-session", "-d", "-s", "t", "-x", str(width), "-y", "50", f"sh {script}")

    def screen(self) -> list[str]:
        """The pane's lines, history included; a line the terminal wrapped is joined
        back (``-J``), so its length shows."""
        out = self("capture-pane", "-p", "-J", "-t", "t", "-S", "-1000")
        return out.rstrip("\n").splitlines()

    def close(self) -> None:
        subprocess.run(
            [self.binary, "-L", self.socket, "kill-server"], capture_output=True, check=False
        )


@pytest.fixture
def tmux(tmp_path: Path) -> Iterator[Tmux]:
    session = Tmux(tmux_binary(), tmp_path)
    try:
        yield session
    finally:
        session.close()


@pytest.fixture
def mock() -> Iterator[MockServerThread]:
    with MockServerThread(MockServerConfig(deterministic=True, max_records=0)) as server:
        yield server


def batch_script(tmp_path: Path, base_url: str, rpm: int = RPM) -> Path:
    """A file of LINES requests (every 7th refused by the server) and a shell script
    that runs run-batch on it with the default progress, then signals tmux."""
    with (tmp_path / "in.jsonl").open("w") as f:
        for i in range(LINES):
            fault = " #mock:fault=400*1000" if i % 7 == 3 else ""
            row = {"custom_id": f"q{i}", "messages": [{"role": "user", "content": f"{i}{fault}"}]}
            f.write(json.dumps(row) + "\n")
    argv = [
        sys.executable, "-m", "minimallm", "run-batch", "in.jsonl", "-o", "out.jsonl",
        "--base-url", base_url, "--model", "mock-model",
        "--rpm", str(rpm), "--max-failures", "none", "--no-cache",
    ]  # fmt: skip
    script = tmp_path / "run.sh"
    script.write_text(
        "unset MINIMALLM_PROGRESS OPENAI_BASE_URL OPENAI_MODEL OPENAI_API_KEY RPM\n"
        f"cd {shlex.quote(str(tmp_path))}\n"
        f"{shlex.join(argv)}\n"
        'echo "exit=$?"\n'
        "tmux wait-for -S run-batch-done\n"
    )
    return script


BAR = re.compile(
    r"^minimallm +(\d+)%\|.*\| (\d+)/(\d+) \[\d\d:\d\d, ([\d.]+)/s, ETA \d:\d\d:\d\d"
    r"(?:, failed (\d+))?(?:, held back by (.+))?\]$"
)


def bars(screen: list[str]) -> list[re.Match[str]]:
    return [m for line in screen if (m := BAR.match(line.rstrip()))]


def test_the_live_bar_in_a_terminal(tmux: Tmux, mock: MockServerThread, tmp_path: Path) -> None:
    tmux.start(batch_script(tmp_path, mock.base_url), WIDTH)
    # Mid-run: read the pane each time the server has answered 10 more requests, until
    # the bar shows failures and the RPM cap binding (both come within the first 20).
    seen: re.Match[str] | None = None
    answered = 0
    while seen is None:
        answered += 10
        assert answered < LINES, "the bar never showed failures and the RPM cap mid-run"
        assert mock.wait_for(lambda st, n=answered: st.requests_total >= n, timeout_s=20.0)
        seen = next((m for m in bars(tmux.screen()) if m[5] and m[6] and int(m[2]) < LINES), None)
    done, total, rate, failed = int(seen[2]), int(seen[3]), float(seen[4]), int(seen[5])
    assert total == LINES and 0 < done < LINES and 0 < failed < done
    assert 0 < rate <= RPM / 60 * 2  # paced: the cap, not the server, sets it
    assert seen[6] == f"RPM cap {RPM}/min"
    assert int(seen[1]) == done * 100 // LINES or int(seen[1]) == round(done * 100 / LINES)

    tmux("wait-for", "run-batch-done", timeout=60.0)
    screen = tmux.screen()
    text = "\n".join(screen)
    assert all(len(line) <= WIDTH for line in screen)  # nothing wrapped
    final = bars(screen)[-1]
    assert (final[1], final[2], final[3]) == ("100", str(LINES), str(LINES))
    failures = LINES // 7 + (LINES % 7 > 3)
    assert final[5] == str(failures)
    assert "Failure 1: q" in text and "    HTTPError: status=400" in text  # above the bar
    assert re.search(
        rf"^\[minimallm\] finished {LINES}/{LINES} in 0:00:\d\d \| ok {LINES - failures} "
        rf"\(cached 0\) \| failed {failures} \| retries 0$",
        text,
        re.M,
    )
    assert f"minimallm run-batch: done: {LINES - failures} answers in out.jsonl, " in text
    assert "exit=1" in screen  # failures in ERRORS


def test_the_bar_fits_a_narrow_terminal(tmux: Tmux, mock: MockServerThread, tmp_path: Path) -> None:
    tmux.start(batch_script(tmp_path, mock.base_url, rpm=12_000), 80)
    tmux("wait-for", "run-batch-done", timeout=60.0)
    screen = tmux.screen()
    bar_lines = [line.rstrip() for line in screen if re.match(r"minimallm +\d+%\|", line)]
    assert bar_lines and all(len(line) <= 80 for line in bar_lines)  # none wrapped
    assert bar_lines[-1].startswith("minimallm 100%|")
    assert f"| {LINES}/{LINES} [" in bar_lines[-1]


# -- not a terminal: plain lines ----------------------------------------------------------


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


class NotATerminal(io.StringIO):
    def isatty(self) -> bool:
        return False


def fake_backend(server: FakeServer, **cfg: object) -> OpenAIMinimaLlm:
    settings: dict[str, object] = {
        "base_url": "http://fake.invalid",
        "model": "m",
        "jitter": 0.0,
        "batch": BatchConfig(num_workers=4, heartbeat_s=5.0),
    }
    settings.update(cfg)
    return OpenAIMinimaLlm(
        MinimaLlmConfig(**settings),  # type: ignore[arg-type]
        options=RuntimeOptions(server.transport),
    )


def reqs(n: int) -> list[MinimaLlmRequest]:
    return [MinimaLlmRequest(f"id{i}", [{"role": "user", "content": f"p{i}"}]) for i in range(n)]


async def test_stderr_not_a_terminal_gets_plain_lines_exactly(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    # RPM 60: one send a second, four workers waiting for their slot: the RPM cap binds.
    monkeypatch.delenv("MINIMALLM_PROGRESS", raising=False)
    err = NotATerminal()
    monkeypatch.setattr(sys, "stderr", err)
    server = FakeServer(lambda c, n: Script(latency=0.5))
    async with fake_backend(server, rpm=60, max_outstanding=4) as backend:
        await backend.run_batched(reqs(12))
    lines = err.getvalue().splitlines()
    assert lines[:2] == [
        "[minimallm] 0:00:05 5/12 41.7% | 1.0/s | ETA 0:00:07",
        "[minimallm]   held back by RPM cap 60/min | server 0.50s | waited 2.00s | 1.0/s HTTP",
    ]
    assert lines[-2].startswith("[minimallm] finished 12/12 in 0:00:1")
    assert all(len(line) < 100 for line in lines)


async def test_progress_off_prints_nothing(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    monkeypatch.setenv("MINIMALLM_PROGRESS", "off")
    err = NotATerminal()
    monkeypatch.setattr(sys, "stderr", err)
    server = FakeServer(lambda c, n: Script(latency=3.0, status=500 if c == "p1" else 200))
    async with fake_backend(server, max_attempts=1, rpm=0) as backend:
        results = await backend.run_batched(reqs(12))
    assert len(results) == 12 and err.getvalue() == ""


# -- the README's tqdm adapter ------------------------------------------------------------


def readme_block(after: str) -> str:
    """The first ```python block after the line ``after`` in the README."""
    text = README.read_text()
    start = text.index("```python\n", text.index(after)) + len("```python\n")
    return text[start : text.index("```", start)]


def test_the_readme_tqdm_adapter_runs(mock_server: MockServerThread) -> None:
    code = readme_block("for example your own tqdm bar")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_BASE_URL=mock_server.base_url, OPENAI_MODEL="mock-model", RPM="0")
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "100/100" in done.stderr and "failed=0" in done.stderr
