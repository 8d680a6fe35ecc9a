"""run-batch input files: each line validated and mapped to a request; pass 1 reports
every bad line with its number (duplicates name both lines) and the model rules; pass
2 yields the requests lazily; stdin is spooled; the id table stays small."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest

from minimallm import MinimaLlmRequest
from minimallm.cli.batchfile import (
    MAX_SHOWN,
    BatchFileError,
    LineError,
    _scan,
    input_file,
    iter_requests,
    parse_line,
    scan_batch,
)
from minimallm.cli.batchfile._ids import IdTable

MSG = [{"role": "user", "content": "hi"}]


def line(obj: Any) -> bytes:
    return (obj if isinstance(obj, str) else json.dumps(obj)).encode() + b"\n"


def write(path: Path, rows: list[Any]) -> Path:
    path.write_bytes(b"".join(line(r) for r in rows))
    return path


def batch_api(cid: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": cid,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"messages": MSG, **body},
    }


# -- one line -------------------------------------------------------------------------


def test_batch_api_line_maps_fields_and_keeps_the_rest_in_extra() -> None:
    parsed = parse_line(
        line(batch_api("q1", model="m", temperature=0, max_tokens=5, top_p=0.5, stop=["\n"]))
    )
    assert parsed is not None
    assert (parsed.custom_id, parsed.model) == ("q1", "m")
    assert parsed.request == MinimaLlmRequest(
        request_id="q1",
        messages=MSG,
        temperature=0,
        max_tokens=5,
        extra={"top_p": 0.5, "stop": ["\n"]},
        model="m",
    )


def test_simple_line_with_id_or_custom_id() -> None:
    a = parse_line(line({"id": 7, "messages": MSG, "seed": 1}))
    b = parse_line(line({"custom_id": "x", "messages": MSG, "model": "m"}))
    assert a is not None and b is not None
    assert a.request == MinimaLlmRequest("7", MSG, extra={"seed": 1})
    assert (b.request, b.model) == (MinimaLlmRequest("x", MSG, model="m"), "m")


def test_blank_lines_crlf_and_a_byte_order_mark() -> None:
    assert parse_line(b"  \r\n") is None
    assert parse_line(b"") is None
    parsed = parse_line("\ufeff".encode() + line(batch_api("q"))[:-1] + b"\r\n")
    assert parsed is not None and parsed.custom_id == "q"


def test_assistant_messages_may_carry_tool_calls_without_content() -> None:
    messages = [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t"}]},
        {"role": "tool", "tool_call_id": "t", "content": "42"},
    ]
    parsed = parse_line(line({"id": "a", "messages": messages}))
    assert parsed is not None and parsed.request.messages == messages


BAD = [
    ('{"id": "a", "messages": [}', "not JSON: Expecting value (column 26)"),
    ('{"id": "a"\r\n', "not JSON: Expecting ',' delimiter (column 11)"),  # cut short
    ('\ufeff{"id": "a"\n', "not JSON: Expecting ',' delimiter (column 12)"),
    (b'{"id": "\xff"}', "not UTF-8 text (byte 0xff at offset 8)"),
    ('["a"]', "not a JSON object but an array"),
    ('{"id": "a", "messages": [], "temperature": NaN}', "NaN is not allowed in JSON"),
    ({"messages": MSG}, 'missing "custom_id" (or "id"): each line is'),
    ({"id": "a", "custom_id": "a", "messages": MSG}, 'give "custom_id" or "id", not both'),
    ({"id": True, "messages": MSG}, '"id" must be a non-empty string or an integer, got true'),
    ({"custom_id": 3, "messages": MSG}, '"custom_id" must be a non-empty string, got 3'),
    ({"custom_id": "", "messages": MSG}, '"custom_id" must be a non-empty string, got ""'),
    ({"id": "a"}, '"messages" must be a non-empty array of {"role", "content"} objects, missing'),
    ({"id": "a", "messages": []}, '"messages" must be a non-empty array of {"role", "content"} '),
    ({"id": "a", "messages": ["hi"]}, '"messages[0]" must be an object with role and content'),
    ({"id": "a", "messages": [{"content": "x"}]}, '"messages[0]" needs a "role"'),
    ({"id": "a", "messages": [{"role": "user"}]}, '"messages[0]" needs a "content" (text or '),
    (
        {"id": "a", "messages": [{"role": "user", "content": 5}]},
        '"messages[0].content" must be text',
    ),
    (
        {"id": "a", "messages": [{"role": "user", "content": ["x"]}]},
        '"messages[0].content[0]" must be',
    ),
    ({"id": "a", "messages": MSG, "model": 3}, '"model" must be a non-empty string, got 3'),
    ({"id": "a", "messages": MSG, "temperature": "hot"}, '"temperature" must be a number >= 0'),
    ({"id": "a", "messages": MSG, "temperature": -1}, '"temperature" must be a number >= 0'),
    ({"id": "a", "messages": MSG, "max_tokens": 0}, '"max_tokens" must be an integer >= 1, got 0'),
    ({"id": "a", "messages": MSG, "max_tokens": 1.5}, '"max_tokens" must be an integer >= 1'),
    ({"id": "a", "messages": MSG, "stream": True}, '"stream" must be false or absent'),
    ({**batch_api("a"), "method": "GET"}, '"method" must be "POST", got "GET"'),
    ({**batch_api("a"), "url": "/v1/embeddings"}, '"url" must be "/v1/chat/completions" (minim'),
    ({**batch_api("a"), "body": "x"}, '"body" must be a chat completion request (an object), got'),
    ({**batch_api("a"), "body": {"prompt": "x"}}, '"body.messages" must be a non-empty array'),
    ({**batch_api("a"), "messages": MSG}, 'unknown key "messages" (put request fields inside \'b'),
    ({**batch_api("a"), "custom-id": "a"}, 'unknown key "custom-id": a Batch API line has'),
    ({"custom_id": "a", "url": "/v1/chat/completions"}, '"method" must be "POST", got null'),
]


@pytest.mark.parametrize(("raw", "message"), BAD)
def test_each_bad_line_says_what_is_wrong(raw: Any, message: str) -> None:
    with pytest.raises(LineError) as info:
        parse_line(raw if isinstance(raw, bytes) else line(raw))
    assert str(info.value).startswith(message)


# -- pass 1: the whole file -------------------------------------------------------------


def test_every_bad_line_is_reported_with_its_number(tmp_path: Path) -> None:
    path = write(
        tmp_path / "in.jsonl",
        [
            batch_api("q1"),
            "not json",
            "",
            {"id": "q2", "messages": MSG},
            {"id": "q1", "messages": MSG},
            batch_api("q3", stream=True),
            {"id": "q2", "messages": MSG},
        ],
    )
    with pytest.raises(BatchFileError) as info:
        scan_batch(path, name="in.jsonl")
    assert str(info.value) == (
        "in.jsonl: 4 bad lines, nothing was sent:\n"
        "  line 2: not JSON: Expecting value (column 1)\n"
        "  line 5: duplicate custom_id 'q1' (first on line 1)\n"
        '  line 6: "body.stream" must be false or absent: minimallm reads whole answers\n'
        "  line 7: duplicate custom_id 'q2' (first on line 4)"
    )
    assert info.value.count == 4 and [n for n, _ in info.value.problems] == [2, 5, 6, 7]


def test_beyond_the_shown_lines_bad_lines_are_counted(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", ["{"] * (MAX_SHOWN + 50))
    with pytest.raises(BatchFileError) as info:
        scan_batch(path)
    assert info.value.count == MAX_SHOWN + 50 and len(info.value.problems) == MAX_SHOWN
    assert str(info.value).endswith("  ... and 50 more bad lines")


def test_a_hash_collision_is_not_a_duplicate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Colliding(IdTable):
        def add(self, custom_id: str, line: int) -> int:
            return super().add("same hash for everyone", line)

    monkeypatch.setattr(_scan, "IdTable", Colliding)
    path = write(tmp_path / "in.jsonl", [batch_api("a"), batch_api("b"), batch_api("a")])
    with pytest.raises(BatchFileError) as info:
        scan_batch(path)
    assert info.value.problems == [(3, "duplicate custom_id 'a' (first on line 1)")]


def test_a_valid_file_gives_its_plan(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [batch_api("a", model="m"), "", {"id": 2, "messages": MSG}])
    plan = scan_batch(path)
    assert (plan.total, plan.model, plan.done, plan.todo) == (2, "m", 0, 2)
    assert [r.request_id for r in iter_requests(plan)] == ["a", "2"]


def test_lines_may_name_different_models_each_sent_its_own(tmp_path: Path) -> None:
    rows = [batch_api(f"q{i}", model="gpt-4o-mini" if i % 2 else "llama") for i in range(4)]
    path = write(tmp_path / "in.jsonl", [*rows, {"id": "x", "messages": MSG}])
    plan = scan_batch(path, model="run-model")
    assert plan.model == "run-model"
    models = [r.model for r in iter_requests(plan)]
    assert models == ["llama", "gpt-4o-mini", "llama", "gpt-4o-mini", None]


def test_without_a_configured_model_the_first_named_is_the_plans(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [batch_api("a", model="m1"), batch_api("b", model="m2")])
    assert scan_batch(path).model == "m1"
    assert scan_batch(write(tmp_path / "none.jsonl", [batch_api("a")])).model is None


def test_pass_two_skips_what_is_done_and_notices_a_changed_file(tmp_path: Path) -> None:
    path = write(tmp_path / "in.jsonl", [batch_api(f"q{i}") for i in range(5)])
    plan = scan_batch(path)
    done = _scan.BatchPlan(path, plan.total, done=3)
    assert [r.request_id for r in iter_requests(done)] == ["q3", "q4"]
    write(path, [batch_api(f"q{i}") for i in range(4)])
    with pytest.raises(BatchFileError, match="has 4 requests now, 5 when checked"):
        list(iter_requests(done))
    write(path, [batch_api("q0"), "{"])
    with pytest.raises(BatchFileError, match="changed since it was checked"):
        list(iter_requests(done))
    # the same number of valid lines, other ids: the file's identity or version tells
    for replace in (False, True):
        rows = [batch_api(f"x{i}") for i in range(5)]
        if replace:  # a new file renamed over the old one
            write(tmp_path / "new.jsonl", rows).replace(path)
        else:  # edited in place
            write(path, rows)
        with pytest.raises(BatchFileError) as info:
            list(iter_requests(plan))
        n = path.stat().st_size
        how = "replaced by another file" if replace else f"edited ({n} bytes now, {n} when checked)"
        assert str(info.value) == (
            f"{path} (changed since it was checked): 1 bad line, nothing was sent:\n"
            f"  {how} after it was checked"
        )


def test_stdin_is_spooled_to_a_file_read_twice_and_removed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = b"".join(line(batch_api(f"q{i}")) for i in range(3))
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    with input_file("-") as path:
        plan = scan_batch(path)
        assert [r.request_id for r in iter_requests(plan)] == ["q0", "q1", "q2"]
    assert not path.exists()


def test_a_missing_input_is_an_os_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        scan_batch(tmp_path / "nope.jsonl")


# -- the id table -----------------------------------------------------------------------


def test_id_table_finds_duplicates_across_growth() -> None:
    table = IdTable()
    slots = table.nbytes
    ids = [f"id-{i}" for i in range(5000)]
    assert all(table.add(cid, n) == 0 for n, cid in enumerate(ids, 1))
    assert table.nbytes > slots and len(table) == 5000
    assert table.add("id-1234", 9999) == 1235
    assert table.add("id-new", 10000) == 0


def test_id_table_is_sized_once_from_a_hint() -> None:
    assert IdTable(1_000_000).nbytes == (1 << 21) * 12  # ~25 MB for a million ids


def test_pass_one_reports_its_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_scan, "PROGRESS_LINES", 2)
    path = write(tmp_path / "in.jsonl", [batch_api(f"q{i}") for i in range(5)])
    seen: list[int] = []
    scan_batch(path, progress=seen.append)
    assert seen == [2, 4]
