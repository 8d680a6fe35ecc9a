"""run-batch output: Batch API lines (exact bytes, the server's body as received), the
writer's ERRORS-before-OUTPUT flush order, and resuming: a run cut at any byte of its
writes, then resumed (even twice), ends byte-identical to an uninterrupted run; files
that do not belong to the input are refused."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from minimallm import MinimaLlmFailure, MinimaLlmResponse, MinimaLlmResult
from minimallm._lazy_json import LazyJson
from minimallm.cli.batchfile import (
    BatchWriter,
    ResumeError,
    batch_request_id,
    default_errors_path,
    error_line,
    iter_requests,
    raw_json_text,
    scan_batch,
    success_line,
)

BODY = '{"id":"chatcmpl-1","object":"chat.completion","choices":[{"index":0,"message":{"role":"assistant","content":"A"}}]}'  # noqa: E501


def ok(cid: str, raw: Any = None) -> MinimaLlmResponse:
    return MinimaLlmResponse(cid, f"answer {cid}", LazyJson(BODY) if raw is None else raw)


def http_404(cid: str) -> MinimaLlmFailure:
    snippet = '{"error": {"message": "no such model"}}'
    return MinimaLlmFailure(cid, "HTTPError", "HTTP 404: no such model", 1, 404, snippet, 60.0)


# -- lines ------------------------------------------------------------------------------


def test_success_line_is_the_batch_api_format_with_the_body_as_received() -> None:
    spaced = '{"choices": [{"message": {"content": "é"}}],  "id": "x"}'
    got = success_line('q"1', ok("ignored", LazyJson(spaced)))
    rid = batch_request_id('q"1')
    assert (
        got
        == (
            f'{{"id":"{rid}","custom_id":"q\\"1","response":{{"status_code":200,'
            f'"request_id":"q\\"1","body":{spaced}}},"error":null}}\n'
        ).encode()
    )
    assert json.loads(got)["response"]["body"]["choices"][0]["message"]["content"] == "é"


def test_batch_request_ids_are_stable_and_distinct() -> None:
    assert batch_request_id("a") == batch_request_id("a") != batch_request_id("b")
    assert len(batch_request_id("a")) == len("batch_req_") + 32
    assert batch_request_id("\ud800") != batch_request_id("a")  # a lone surrogate is fine


def test_raw_json_text_for_each_kind_of_body() -> None:
    pretty = '{\n  "a": "x\\ny",\r\n  "b": [1, 2]\n}'
    assert raw_json_text(ok("q", LazyJson(pretty))) == '{"a":"x\\ny","b":[1,2]}'
    assert raw_json_text(ok("q", {"a": "é"})) == '{"a":"é"}'
    assert raw_json_text(ok("q", MappingProxyType({"a": 1}))) == '{"a":1}'
    synthesized = json.loads(raw_json_text(MinimaLlmResponse("q", "the text", None)))
    assert synthesized["choices"][0]["message"] == {"role": "assistant", "content": "the text"}


def test_error_lines_keep_the_servers_answer_when_there_was_one() -> None:
    line = json.loads(error_line("q", http_404("q")))
    assert line == {
        "id": batch_request_id("q"),
        "custom_id": "q",
        "response": {
            "status_code": 404,
            "request_id": "q",
            "body": {"error": {"message": "no such model"}},
        },
        "error": {"code": "HTTPError", "message": "HTTP 404: no such model", "attempts": 1},
    }
    timeout = MinimaLlmFailure("q", "TimeoutError", "attempt exceeded timeout_s=5", 6, 408)
    assert json.loads(error_line("q", timeout))["response"] is None
    refused = MinimaLlmFailure("q", "ConnectError", "ConnectError: refused", 6)
    assert json.loads(error_line("q", refused))["response"] is None
    bad = MinimaLlmFailure("q", "MalformedResponse", "2xx body is not JSON", 6, 200, "<html>")
    assert json.loads(error_line("q", bad))["response"]["body"] == "<html>"


def test_default_errors_path() -> None:
    assert default_errors_path("out/answers.jsonl") == "out/answers.errors.jsonl"
    assert default_errors_path("answers") == "answers.errors.jsonl"
    assert default_errors_path("-") is None


# -- the writer ----------------------------------------------------------------------


class Recorder(io.BytesIO):
    """A file that logs each write, shared log across files: (name, bytes)."""

    def __init__(self, name: str, log: list[tuple[str, bytes]], initial: bytes = b"") -> None:
        super().__init__(initial)
        self.seek(0, 2)
        self.name_ = name
        self.log = log

    def write(self, data: Any) -> int:
        self.log.append((self.name_, bytes(data)))
        return super().write(data)

    def close(self) -> None:  # keep the bytes readable after the writer closes us
        pass


def test_flush_writes_errors_before_output() -> None:
    log: list[tuple[str, bytes]] = []
    writer = BatchWriter(Recorder("out", log), Recorder("err", log), flush_bytes=10**9)
    writer.write(ok("a"))
    writer.write(http_404("b"))
    writer.write(ok("c"))
    assert log == []  # buffered until flushed
    writer.flush()
    assert [name for name, _ in log] == ["err", "out"]
    assert log[1][1] == success_line("a", ok("a")) + success_line("c", ok("c"))
    writer.close()
    writer.close()
    assert (writer.ok, writer.failed) == (2, 1)
    with pytest.raises(ValueError, match="closed"):
        writer.write(ok("d"))


class Interrupted(Recorder):
    """A file whose first write lands, and then Ctrl-C arrives (before the writer can
    note that it landed), or that is interrupted before anything lands."""

    def __init__(self, name: str, log: list[tuple[str, bytes]], *, lands: bool) -> None:
        super().__init__(name, log)
        self.lands = lands
        self.interrupted = False

    def write(self, data: Any) -> int:
        if not self.interrupted:
            self.interrupted = True
            if self.lands:
                super().write(data)
            raise KeyboardInterrupt
        return super().write(data)


@pytest.mark.parametrize(("which", "lands"), [("err", True), ("err", False), ("out", True)])
def test_after_an_interrupted_flush_closing_writes_nothing_more(which: str, lands: bool) -> None:
    # Writing the lines again would duplicate them (unresumable); writing OUTPUT after
    # an ERRORS write that may not have landed would put an answer after a failure
    # that is in neither file (also unresumable). Resume redoes whatever is missing.
    log: list[tuple[str, bytes]] = []
    out = Interrupted("out", log, lands=lands) if which == "out" else Recorder("out", log)
    err = Interrupted("err", log, lands=lands) if which == "err" else Recorder("err", log)
    writer = BatchWriter(out, err, flush_bytes=10**9)
    writer.write(http_404("a"))
    writer.write(ok("b"))
    with pytest.raises(KeyboardInterrupt):
        writer.flush()
    writer.close()
    assert err.getvalue() == (error_line("a", http_404("a")) if lands else b"")
    assert out.getvalue() == (success_line("b", ok("b")) if which == "out" else b"")
    with pytest.raises(ValueError, match="closed"):
        writer.write(ok("c"))


def test_without_an_errors_file_failures_go_inline_in_order() -> None:
    log: list[tuple[str, bytes]] = []
    out = Recorder("out", log)
    with BatchWriter(out, None) as writer:
        writer.write(ok("a"))
        writer.write(http_404("b"))
    assert out.getvalue() == success_line("a", ok("a")) + error_line("b", http_404("b"))


def test_errors_file_is_created_at_the_first_failure(tmp_path: Path) -> None:
    inp = write_input(tmp_path, 2)
    plan = scan_batch(inp)
    errors = tmp_path / "out.errors.jsonl"
    with BatchWriter.open(plan, str(tmp_path / "out.jsonl"), str(errors)) as writer:
        writer.write(ok("q0"))
    assert not errors.exists()
    with BatchWriter.open(plan, str(tmp_path / "out.jsonl"), str(errors)) as writer:
        writer.write(http_404("q0"))
    assert errors.read_bytes() == error_line("q0", http_404("q0"))
    assert (tmp_path / "out.jsonl").read_bytes() == b""  # cut to what the plan keeps


def test_a_result_that_is_not_a_result_is_refused() -> None:
    writer = BatchWriter(io.BytesIO(), None)
    with pytest.raises(TypeError, match="expected a MinimaLlmResponse or MinimaLlmFailure"):
        writer.write(None)  # type: ignore[arg-type]


# -- resuming -------------------------------------------------------------------------


def write_input(tmp_path: Path, n: int) -> Path:
    path = tmp_path / "in.jsonl"
    rows = [
        {"custom_id": f"q{i}", "messages": [{"role": "user", "content": f"#{i}"}]} for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def outcome(cid: str) -> MinimaLlmResult:
    """A deterministic result per request: some fail."""
    i = int(cid[1:])
    if i % 7 == 3 or i % 11 == 5:
        return http_404(cid)
    return ok(cid, LazyJson(f'{{"id":"c{i}","choices":[{{"message":{{"content":"{i}"}}}}]}}'))


def run_recorded(
    tmp_path: Path, inp: Path, out: bytes, err: bytes, flush_bytes: int
) -> tuple[list[tuple[str, bytes]], bytes, bytes, int]:
    """Resume from files holding ``out``/``err``; the writes made, recorded (so a crash
    can be replayed at any byte), the bytes kept of each file, and the plan's redo."""
    (tmp_path / "out.jsonl").write_bytes(out)
    (tmp_path / "err.jsonl").write_bytes(err)
    plan = scan_batch(inp, output=tmp_path / "out.jsonl", errors=tmp_path / "err.jsonl")
    log: list[tuple[str, bytes]] = []
    kept_out, kept_err = out[: plan.output_keep], err[: plan.errors_keep]
    writer = BatchWriter(
        Recorder("out", log, kept_out), Recorder("err", log, kept_err), flush_bytes=flush_bytes
    )
    with writer:
        for req in iter_requests(plan):
            writer.write(outcome(req.request_id))
    return log, kept_out, kept_err, plan.redo


def crash(log: list[tuple[str, bytes]], at: int, out: bytes, err: bytes) -> tuple[bytes, bytes]:
    """The files if the process died after ``at`` bytes of the logged writes."""
    files = {"out": out, "err": err}
    for name, data in log:
        take = data[: max(0, at)]
        files[name] += take
        at -= len(data)
        if at <= 0:
            break
    return files["out"], files["err"]


def cut_points(log: list[tuple[str, bytes]]) -> Iterator[int]:
    total = sum(len(d) for _, d in log)
    edges = set(range(0, total + 1, 17))
    pos = 0
    for _, data in log:
        edges |= {pos - 1, pos, pos + 1}
        pos += len(data)
    return iter(sorted(e for e in edges if 0 <= e <= total))


@pytest.fixture
def reference(tmp_path: Path) -> tuple[Path, bytes, bytes, list[tuple[str, bytes]]]:
    inp = write_input(tmp_path, 40)
    log, _, _, _ = run_recorded(tmp_path, inp, b"", b"", flush_bytes=700)
    out, err = crash(log, 10**9, b"", b"")
    return inp, out, err, log


def test_resume_after_a_crash_at_any_byte_is_byte_identical(
    tmp_path: Path, reference: tuple[Path, bytes, bytes, list[tuple[str, bytes]]]
) -> None:
    inp, want_out, want_err, log = reference
    assert want_out.count(b"\n") + want_err.count(b"\n") == 40  # every line accounted for
    redone = 0
    for at in cut_points(log):
        out, err = crash(log, at, b"", b"")
        rest, kept_out, kept_err, redo = run_recorded(tmp_path, inp, out, err, flush_bytes=700)
        redone += redo
        got_out, got_err = crash(rest, 10**9, kept_out, kept_err)
        assert (got_out, got_err) == (want_out, want_err), f"cut at byte {at}"
    assert redone > 0  # some cuts left ERRORS ahead of OUTPUT: those lines were redone


def test_a_resumed_run_cut_again_still_ends_identical(
    tmp_path: Path, reference: tuple[Path, bytes, bytes, list[tuple[str, bytes]]]
) -> None:
    inp, want_out, want_err, log = reference
    for first in list(cut_points(log))[::23]:
        out, err = crash(log, first, b"", b"")
        second_log, kept_out, kept_err, _ = run_recorded(tmp_path, inp, out, err, 300)
        for second in list(cut_points(second_log))[::11]:
            out2, err2 = crash(second_log, second, kept_out, kept_err)
            rest, k_out, k_err, _ = run_recorded(tmp_path, inp, out2, err2, 300)
            assert crash(rest, 10**9, k_out, k_err) == (want_out, want_err), (first, second)


def test_a_finished_run_has_nothing_left_to_do(
    tmp_path: Path, reference: tuple[Path, bytes, bytes, list[tuple[str, bytes]]]
) -> None:
    inp, want_out, want_err, _ = reference
    (tmp_path / "o").write_bytes(want_out)
    (tmp_path / "e").write_bytes(want_err)
    plan = scan_batch(inp, output=tmp_path / "o", errors=tmp_path / "e")
    assert (plan.done, plan.done_ok, plan.done_failed, plan.todo) == (40, 31, 9, 0)
    assert (plan.output_keep, plan.errors_keep) == (len(want_out), len(want_err))


def resume_error(tmp_path: Path, n: int, out: list[str], err: list[str] = ()) -> str:  # type: ignore[assignment]
    inp = write_input(tmp_path, n)
    (tmp_path / "o").write_bytes(b"".join(success_line(c, ok(c)) for c in out))
    (tmp_path / "e").write_bytes(b"".join(error_line(c, http_404(c)) for c in err))
    with pytest.raises(ResumeError) as info:
        scan_batch(inp, output=tmp_path / "o", errors=tmp_path / "e", name="in.jsonl")
    return str(info.value)


def test_files_of_another_input_are_refused(tmp_path: Path) -> None:
    assert resume_error(tmp_path, 3, ["q0", "zz"]) == (
        "cannot resume: OUTPUT line 2 has custom_id 'zz', but in.jsonl line 2 ('q1') comes "
        "first and is in neither OUTPUT nor ERRORS: the files are not from an earlier run "
        "of this input; use --overwrite to start over or choose another output file"
    )
    assert "ERRORS line 1 has custom_id 'zz', which is not in in.jsonl" in resume_error(
        tmp_path, 3, ["q0"], ["zz"]
    )


def test_lines_out_of_order_or_a_gap_are_refused(tmp_path: Path) -> None:
    assert "OUTPUT line 1 has custom_id 'q1', but in.jsonl line 1 ('q0')" in resume_error(
        tmp_path, 3, ["q1", "q0"]
    )
    assert "OUTPUT line 2 has custom_id 'q2', but in.jsonl line 2 ('q1')" in resume_error(
        tmp_path, 3, ["q0", "q2"]
    )  # q1 is in neither file: its line was lost, so appending would break the order
    assert "ERRORS line 2 has custom_id 'q1'" in resume_error(tmp_path, 3, ["q0"], ["q2", "q1"])


def test_a_line_that_is_not_an_output_line_is_refused(tmp_path: Path) -> None:
    inp = write_input(tmp_path, 2)
    (tmp_path / "o").write_bytes(success_line("q0", ok("q0")) + b"hello\n")
    with pytest.raises(ResumeError, match=r"OUTPUT .* line 2 is not a run-batch output line"):
        scan_batch(inp, output=tmp_path / "o")


def test_output_written_by_another_tool_is_read_in_full(tmp_path: Path) -> None:
    inp = write_input(tmp_path, 3)
    other = {"id": "batch_req_x", "custom_id": "q0", "response": None, "error": None}
    (tmp_path / "o").write_text(json.dumps(other) + "\n" + '{"custom_id": "q1"')  # torn
    plan = scan_batch(inp, output=tmp_path / "o")
    assert (plan.done, plan.output_keep) == (1, len(json.dumps(other)) + 1)


class _FullDisk(io.BytesIO):
    def write(self, data: Any) -> int:
        raise OSError(28, "No space left on device")


def test_the_counts_are_of_lines_written_not_buffered_when_the_disk_fills() -> None:
    writer = BatchWriter(_FullDisk(), None)
    for i in range(3):
        writer.write(ok(f"q{i}"))
    with pytest.raises(OSError, match="No space"):
        writer.flush()
    writer.close()  # writes nothing more
    assert (writer.ok, writer.failed) == (0, 0)


def test_failures_held_until_the_first_answer_can_be_dropped() -> None:
    out, err = io.BytesIO(), io.BytesIO()
    writer = BatchWriter(out, err)
    writer.hold_failures()
    writer.write(http_404("a"))
    writer.write(http_404("b"))
    writer.flush()
    assert err.getvalue() == b""  # held
    assert writer.drop_held() == 2
    assert (out.getvalue(), err.getvalue()) == (b"", b"")
    writer.close()
    assert writer.failed == 0
    # an answer ends the holding: everything is written, in order
    out, err = io.BytesIO(), io.BytesIO()
    writer = BatchWriter(out, err)
    writer.hold_failures()
    writer.write(http_404("a"))
    writer.write(ok("b"))
    writer.flush()
    assert writer.drop_held() == 0
    assert (writer.ok, writer.failed) == (1, 1)
    assert b'"custom_id":"a"' in err.getvalue() and b'"custom_id":"b"' in out.getvalue()
