"""`minimallm run-batch`: preparing a run (paths, the input checked, what is done, the
configuration from flags over the environment), with exit code 2 and a clear message
for every kind of bad input."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from minimallm._types import MinimaLlmResponse
from minimallm.cli import build_parser
from minimallm.cli.batchfile import success_line
from minimallm.cli.run_batch import Job, prepare

ENV = {"OPENAI_BASE_URL": "http://127.0.0.1:9", "OPENAI_API_KEY": "sk-SECRET-xyz"}
MSG = [{"role": "user", "content": "hi"}]


def write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


def prepared(argv: list[str], env: dict[str, str] | None = None) -> tuple[Job | int, str]:
    ns = build_parser().parse_args(["run-batch", *argv])
    err = io.StringIO()
    with contextlib.ExitStack() as stack:
        job = prepare(ns, stack, {**ENV, **(env or {})}, err)
    return job, err.getvalue()


def test_flags_beat_the_environment_and_the_model_may_come_from_the_lines(
    tmp_path: Path,
) -> None:
    rows = [{"custom_id": f"q{i}", "model": "llama", "messages": MSG} for i in range(3)]
    inp = write(tmp_path / "in.jsonl", rows)
    out = tmp_path / "out.jsonl"
    job, err = prepared([str(inp), "-o", str(out), "--rpm", "0", "--workers", "8"], {"RPM": "5"})
    assert err == "" and isinstance(job, Job)
    assert (job.config.model, job.config.rpm, job.config.num_workers) == ("llama", 0, 8)
    assert job.errors == str(tmp_path / "out.errors.jsonl")
    assert (job.plan.total, job.plan.todo) == (3, 3)
    assert [r.request_id for r in job.requests()] == ["q0", "q1", "q2"]


def test_bad_lines_are_all_reported_and_nothing_else_happens(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "messages": MSG}, "{", {"id": "a"}])
    job, err = prepared([str(inp), "-o", str(tmp_path / "o.jsonl"), "--model", "m"])
    assert job == 2
    assert err.startswith(f"minimallm run-batch: {inp}: 2 bad lines, nothing was sent:\n")
    assert "  line 2: not JSON" in err and '  line 3: "messages" must be' in err
    assert not (tmp_path / "o.jsonl").exists()


def test_bad_flags_name_the_flag_and_never_the_key(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "messages": MSG}])
    job, err = prepared([str(inp), "-o", str(tmp_path / "o"), "--timeout", "soon"])
    assert job == 2
    assert "--timeout='soon': must be a number > 0 (seconds)" in err
    assert "OPENAI_MODEL (or --model): required, not set" in err
    assert "SECRET" not in err


def test_output_that_belongs_to_another_input_is_refused_unless_overwriting(
    tmp_path: Path,
) -> None:
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "messages": MSG}])
    out = tmp_path / "o.jsonl"
    out.write_bytes(success_line("zz", MinimaLlmResponse("zz", "x", {"choices": []})))
    job, err = prepared([str(inp), "-o", str(out), "--model", "m"])
    assert job == 2 and "cannot resume: OUTPUT line 1 has custom_id 'zz'" in err
    job, err = prepared([str(inp), "-o", str(out), "--model", "m", "--overwrite"])
    assert isinstance(job, Job) and job.plan.todo == 1
    with job.open_writer():
        pass
    assert out.read_bytes() == b""  # overwritten


def test_a_missing_input_and_clashing_paths(tmp_path: Path) -> None:
    job, err = prepared([str(tmp_path / "nope.jsonl"), "-o", str(tmp_path / "o")])
    assert job == 2
    missing = tmp_path / "nope.jsonl"
    assert err == f"minimallm run-batch: cannot read {missing}: No such file or directory\n"
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "messages": MSG}])
    job, err = prepared([str(inp), "-o", str(inp)])
    assert job == 2 and "INPUT and OUTPUT are the same file" in err
    job, err = prepared([str(inp), "-o", str(tmp_path / "o"), "--errors", str(tmp_path / "o")])
    assert job == 2 and "OUTPUT and ERRORS are the same file" in err
    job, err = prepared([str(inp), "-o", "-", "--errors", "-"])
    assert job == 2 and "--errors needs a file" in err


def test_stdout_output_has_failures_inline_unless_errors_named(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "messages": MSG}])
    job, _ = prepared([str(inp), "-o", "-", "--model", "m"])
    assert isinstance(job, Job) and job.errors is None


@pytest.mark.parametrize("flag", ["--quiet", "-q"])
def test_quiet_flag(flag: str) -> None:
    ns = build_parser().parse_args(["run-batch", "in", "-o", "out", flag])
    assert ns.quiet is True


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (
            ["-o", "{d}/nodir/out.jsonl"],
            "-o/--output {d}/nodir/out.jsonl: the directory {d}/nodir does not exist; "
            "create it first",
        ),
        (
            ["-o", "{d}/sub/"],
            "-o/--output {d}/sub/ is a directory: name a file (e.g. {d}/sub/out.jsonl)",
        ),
        (
            ["-o", "{d}/o.jsonl", "--errors", "{d}/nodir/e.jsonl"],
            "--errors {d}/nodir/e.jsonl: the directory {d}/nodir does not exist; create it first",
        ),
        (
            ["-o", "-", "--retry-failed"],
            "--retry-failed needs the OUTPUT and ERRORS of an earlier run; not with -o -",
        ),
    ],
    ids=["missing-output-dir", "output-is-dir", "missing-errors-dir", "retry-to-stdout"],
)
def test_bad_paths_are_refused_before_anything_is_read_or_written(
    tmp_path: Path, where: list[str], expected: str
) -> None:
    (tmp_path / "sub").mkdir()
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "messages": MSG}])
    argv = [str(inp), "--model", "m", *(w.format(d=tmp_path) for w in where)]
    job, err = prepared(argv)
    assert job == 2
    assert err == f"minimallm run-batch: {expected.format(d=tmp_path)}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "sub"]


def test_a_bad_progress_mode_is_refused_before_overwrite_empties_output(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "messages": MSG}])
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"precious\n")
    argv = [str(inp), "-o", str(out), "--model", "m", "--overwrite"]
    job, err = prepared(argv, {"MINIMALLM_PROGRESS": "bars"})
    assert job == 2
    assert err == (
        "minimallm run-batch: MINIMALLM_PROGRESS='bars' is not a progress mode; use auto, "
        "bar, lines, log, off\n"
    )
    assert out.read_bytes() == b"precious\n"


def test_the_base_url_old_name_a_full_endpoint_and_credentials(tmp_path: Path) -> None:
    inp = write(tmp_path / "in.jsonl", [{"id": "a", "messages": MSG}])
    argv = [str(inp), "-o", str(tmp_path / "o.jsonl"), "--model", "m"]
    old = {"OPENAI_BASE_URL": "", "OPENAI_API_BASE": "http://h:1/v1/chat/completions"}
    job, err = prepared(argv, old)
    assert isinstance(job, Job), err
    assert job.config.base_url == "http://h:1/v1"  # the endpoint's own path is dropped
    job, err = prepared([*argv, "--base-url", "https://user:pa55word@h/v1"])
    assert job == 2
    assert "pa55word" not in err and "user" not in err.split("must not")[0]
    assert "--base-url='https://***@h/v1': must not contain a user name or password" in err


def test_provider_batch_with_several_endpoints_names_them_and_sends_nothing(
    tmp_path: Path,
) -> None:
    inp = write(tmp_path / "in.jsonl", [{"custom_id": "q0", "messages": MSG}])
    out = tmp_path / "out.jsonl"
    urls = "http://127.0.0.1:9/v1,http://127.0.0.1:10/v1"
    job, err = prepared(
        [str(inp), "-o", str(out), "--model", "m", "--provider-batch"], {"OPENAI_BASE_URL": urls}
    )
    assert job == 2
    assert "--provider-batch" in err and "2 endpoints" in err
    assert "http://127.0.0.1:10/v1" in err and "sk-SECRET" not in err
    assert not out.exists()
    job, err = prepared([str(inp), "-o", str(out), "--model", "m", "--provider-batch"])
    assert isinstance(job, Job) and err == ""
