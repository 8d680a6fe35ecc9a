"""Checking what a batch sent back (``provider_batch._collect``) and writing it in order:
every bad line named, the body kept as the provider's own text, the key redacted,
expired lines left to send again, nothing written past the first request waiting."""

from __future__ import annotations

import io
import json
from pathlib import Path

from minimallm.cli.batchfile import BatchWriter
from minimallm.cli.provider_batch._collect import Collected, collect_file, write_ready
from minimallm.cli.provider_batch._state import RunState

BODY = '{"id": "x", "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi é"}}]}'


def ok_line(custom_id: str) -> str:
    return (
        f'{{"id": "batch_req_1", "custom_id": "{custom_id}", "response": {{"status_code": 200, '
        f'"request_id": "r", "body": {BODY}}}, "error": null}}'
    )


def state_with(tmp_path: Path) -> RunState:
    state = RunState(tmp_path / "s.db")
    state.start({"first": "0"})
    with state.transaction():
        state.new_chunk(1, "c1", 3, 100)
        state.new_chunk(2, "c2", 1, 100)
        state.add_lines(
            [(0, "a", "ka", 1), (1, "b", "kb", 1), (2, "c", "kc", 1), (3, "d", "kd", 2)]
        )
    return state


def test_every_bad_line_is_named_and_changes_nothing(tmp_path: Path) -> None:
    state = state_with(tmp_path)
    secret = "sk-secret-123456"
    err_body = {"error": {"message": f"bad key {secret}", "type": "invalid_request_error"}}
    rejected = {"custom_id": "b", "response": {"status_code": 400, "body": err_body}}
    expired = {"custom_id": "c", "response": None,
               "error": {"code": "batch_expired", "message": "too late"}}  # fmt: skip
    path = tmp_path / "out.jsonl"
    path.write_text("\n".join([
        ok_line("a"), ok_line("a"), "not json", json.dumps({"custom_id": "zz"}),
        ok_line("d"), json.dumps(rejected), json.dumps(expired), json.dumps({"x": 1}),
    ]) + "\n")  # fmt: skip
    got = Collected()
    with state.transaction():
        collect_file(state, 1, path, "output file f", secret, got, None)
    assert (got.ok, got.failed, got.not_run) == (1, 1, 1)
    assert got.problems == [
        "output file f line 2: custom_id 'a' answered twice (first kept)",
        "output file f line 3: not a JSON line",
        "output file f line 4: custom_id 'zz' was not sent in this batch",
        "output file f line 5: custom_id 'd' was not sent in this batch",
        "output file f line 8: no custom_id",
    ]
    assert state.missing(1) == (1, ["c"])  # expired: never ran
    assert list(state.unanswered(0)) == []  # chunk 1 not collected yet
    state.set_collected(1)
    assert list(state.unanswered(0)) == [(2, "c")]

    buf, errs = io.BytesIO(), io.BytesIO()
    writer = BatchWriter(buf, errs)
    assert write_ready(state, writer, 0) == 2  # a, b; c waits
    first = json.loads(buf.getvalue())
    assert first["custom_id"] == "a"
    assert buf.getvalue().decode().count(BODY) == 1  # the provider's own text, spaces and all
    failure = json.loads(errs.getvalue())
    assert failure["custom_id"] == "b" and failure["error"]["code"] == "HTTPError"
    assert failure["error"]["message"].startswith("HTTP 400: bad key")
    assert secret not in errs.getvalue().decode() and "***" in errs.getvalue().decode()
    state.close()
