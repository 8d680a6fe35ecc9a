"""The mock's Batch API (``minimallm.mock.batch_api``) on a hand-moved clock: files up and
down, a batch's statuses over its duration, per-line faults, expired, cancelled and
failed batches, the lists and their pages; and the routes through a real server."""

from __future__ import annotations

import http.client
import json
from typing import Any

import pytest

from minimallm._errors import ConfigError
from minimallm.mock import MockServerConfig, MockServerThread
from minimallm.mock.batch_api import MockBatchApi
from minimallm.mock.bodies import completion_body


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def answer(body: dict[str, Any], kind: str) -> bytes:
    return completion_body(body, "echo", number=0, default_model="m", deterministic=True)


def api(clock: Clock, outcomes: dict[int, tuple[str, float]] | None = None) -> MockBatchApi:
    return MockBatchApi(duration_s=10.0, outcomes=outcomes or {}, answer=answer, clock=clock)


def lines(n: int, fault_at: int = -1) -> bytes:
    out = []
    for i in range(n):
        text = f"hi {i}" + (" #mock:fault=400" if i == fault_at else "")
        body = {"model": "m", "messages": [{"role": "user", "content": text}]}
        row = {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}
        out.append(json.dumps(row).encode() + b"\n")
    return b"".join(out)


def upload(a: MockBatchApi, data: bytes, name: str = "in.jsonl") -> dict[str, Any]:
    body = (
        b'--B\r\ncontent-disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        b'--B\r\ncontent-disposition: form-data; name="file"; filename="' + name.encode()
        + b'"\r\n\r\n' + data + b"\r\n--B--\r\n"
    )  # fmt: skip
    status, out, _ = a.handle("POST", "/v1/files", {"content-type": "multipart/form-data; boundary=B"}, body)  # fmt: skip  # noqa: E501
    assert status == 200, out
    return dict(json.loads(out))


def call(a: MockBatchApi, method: str, target: str, body: Any = None) -> tuple[int, Any]:
    raw = b"" if body is None else json.dumps(body).encode()
    status, out, ctype = a.handle(method, target, {}, raw)
    return status, json.loads(out) if ctype == "application/json" else out


def create(a: MockBatchApi, file_id: str) -> dict[str, Any]:
    args = {"input_file_id": file_id, "endpoint": "/v1/chat/completions"}
    status, batch = call(a, "POST", "/v1/batches", {**args, "completion_window": "24h"})
    assert status == 200, batch
    return dict(batch)


def content(a: MockBatchApi, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    status, out = call(a, "GET", f"/v1/files/{file_id}/content")
    assert status == 200
    return [json.loads(line) for line in out.splitlines()]


def test_a_batch_goes_through_its_statuses_and_answers_every_line() -> None:
    clock = Clock()
    a = api(clock)
    f = upload(a, lines(10, fault_at=3))
    assert (f["filename"], f["bytes"], f["purpose"]) == ("in.jsonl", len(lines(10, 3)), "batch")
    b = create(a, f["id"])
    assert b["status"] == "validating" and b["expires_at"] == b["created_at"] + 86_400
    seen = []
    for t in (0.5, 1.0, 5.0, 8.9, 9.5, 10.0):
        clock.now = 1_000_000.0 + t
        _, b = call(a, "GET", f"/v1/batches/{b['id']}")
        seen.append((b["status"], b["request_counts"]["completed"], b["request_counts"]["failed"]))
    assert seen == [
        ("validating", 0, 0), ("in_progress", 0, 0), ("in_progress", 4, 1),
        ("in_progress", 8, 1), ("finalizing", 9, 1), ("completed", 9, 1),
    ]  # fmt: skip
    out = content(a, b["output_file_id"])
    errors = content(a, b["error_file_id"])
    assert [r["custom_id"] for r in out] == [f"q{i}" for i in reversed(range(10)) if i != 3]
    assert out[0]["response"]["body"]["choices"][0]["message"]["content"] == "echo"
    assert [(r["custom_id"], r["response"]["status_code"]) for r in errors] == [("q3", 400)]
    assert errors[0]["response"]["body"]["error"]["message"] == "mock fault: injected HTTP 400"
    assert a.counters == {"uploads": 1, "upload_lines": 10, "batches_created": 1, "downloads": 2}


def test_an_expiring_batch_keeps_the_lines_it_finished() -> None:
    clock = Clock()
    a = api(clock, {1: ("expired", 0.5)})
    b = create(a, upload(a, lines(10))["id"])
    clock.now += 10.0
    _, b = call(a, "GET", f"/v1/batches/{b['id']}")
    assert b["status"] == "expired" and b["request_counts"]["completed"] == 5
    assert sorted(r["custom_id"] for r in content(a, b["output_file_id"])) == [
        f"q{i}" for i in range(5)
    ]
    expired = content(a, b["error_file_id"])
    assert {r["error"]["code"] for r in expired} == {"batch_expired"} and len(expired) == 5


def test_cancel_freezes_a_batch_and_a_failed_one_says_why() -> None:
    clock = Clock()
    a = api(clock, {2: ("failed", 0.5)})
    f = upload(a, lines(10))
    b = create(a, f["id"])
    clock.now += 5.0
    status, cancelled = call(a, "POST", f"/v1/batches/{b['id']}/cancel")
    assert status == 200 and cancelled["status"] == "cancelling"
    clock.now += 1.0
    _, b = call(a, "GET", f"/v1/batches/{b['id']}")
    assert b["status"] == "cancelled" and b["request_counts"]["completed"] == 5
    assert len(content(a, b["output_file_id"])) == 5 and b["error_file_id"] is None
    assert call(a, "POST", f"/v1/batches/{b['id']}/cancel")[0] == 400  # already over
    failed = create(a, f["id"])
    clock.now += 2.0
    _, failed = call(a, "GET", f"/v1/batches/{failed['id']}")
    assert failed["status"] == "failed" and "on demand" in failed["errors"]["data"][0]["message"]


def test_lists_are_newest_first_and_paged() -> None:
    a = api(Clock())
    files = [upload(a, lines(1), f"f{i}.jsonl")["id"] for i in range(3)]
    for f in files:
        create(a, f)
    _, page = call(a, "GET", "/v1/batches?limit=2")
    assert [b["input_file_id"] for b in page["data"]] == files[::-1][:2] and page["has_more"]
    _, rest = call(a, "GET", f"/v1/batches?limit=2&after={page['last_id']}")
    assert [b["input_file_id"] for b in rest["data"]] == files[:1] and not rest["has_more"]
    _, listed = call(a, "GET", "/v1/files?purpose=batch")
    assert [f["filename"] for f in listed["data"]] == ["f2.jsonl", "f1.jsonl", "f0.jsonl"]


def test_bad_requests_are_answered_with_errors() -> None:
    a = api(Clock())
    assert a.handle("POST", "/v1/files", {"content-type": "text/plain"}, b"x")[0] == 400
    assert call(a, "POST", "/v1/batches", {"input_file_id": "nope"})[0] == 400
    assert call(a, "GET", "/v1/batches/nope")[0] == 404
    assert call(a, "GET", "/v1/files/nope/content")[0] == 404
    f = upload(a, b'{"custom_id": "a", "method": "GET", "url": "/x", "body": {}}\n')
    b = create(a, f["id"])
    assert b["status"] == "validating"


def test_bad_batch_outcomes_are_refused() -> None:
    with pytest.raises(ConfigError, match="N=expired@FRACTION"):
        MockServerConfig(batch_outcomes=("1=exploded",))
    assert MockServerConfig(batch_outcomes=("3=cancelled@0.25",)).batch_outcome_map == {
        3: ("cancelled", 0.25)
    }


def test_the_server_routes_the_batch_api_and_counts_it() -> None:
    config = MockServerConfig(batch_duration_s=0.0, deterministic=True)
    with MockServerThread(config) as server:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/v1/batches")
        assert json.loads(conn.getresponse().read())["data"] == []
        conn.request("GET", "/mock/batches")
        assert json.loads(conn.getresponse().read())["uploads"] == 0
        conn.close()
