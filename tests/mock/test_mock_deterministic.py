"""``MockServerConfig(deterministic=True)`` / ``--deterministic``: the same request gets
the same bytes, whenever and in whatever order it comes (run-batch's resume tests
compare whole output files of separate runs)."""

from __future__ import annotations

import http.client
import json

from minimallm.mock import MockServerConfig, MockServerThread
from minimallm.mock.bodies import completion_body
from minimallm.mock.cli import build_parser, config_from_args, config_to_argv


def post(mock: MockServerThread, body: dict[str, object]) -> bytes:
    conn = http.client.HTTPConnection("127.0.0.1", mock.port, timeout=5)
    try:
        conn.request("POST", "/v1/chat/completions", json.dumps(body))
        return conn.getresponse().read()
    finally:
        conn.close()


def test_same_request_same_bytes_and_different_requests_different_ids() -> None:
    a = {"model": "m", "messages": [{"role": "user", "content": "a"}]}
    b = {"model": "m", "messages": [{"role": "user", "content": "b"}]}
    with MockServerThread(MockServerConfig(deterministic=True)) as mock:
        first_a, first_b, again_a = post(mock, a), post(mock, b), post(mock, a)
    assert first_a == again_a
    answer_a, answer_b = json.loads(first_a), json.loads(first_b)
    assert answer_a["created"] == 0 and answer_a["id"].startswith("chatcmpl-mock-")
    assert answer_a["id"] != answer_b["id"]
    assert answer_a["choices"][0]["message"]["content"] == "echo: a"


def test_by_default_answers_are_numbered_and_stamped() -> None:
    request = {"messages": [{"role": "user", "content": "a"}]}
    one = json.loads(completion_body(request, "x", number=1, default_model="m"))
    two = json.loads(completion_body(request, "x", number=2, default_model="m"))
    assert (one["id"], two["id"]) == ("chatcmpl-mock-1", "chatcmpl-mock-2")
    assert one["created"] > 0


def test_the_flag_crosses_to_a_server_process() -> None:
    config = MockServerConfig(deterministic=True)
    assert "--deterministic" in config_to_argv(config)
    assert config_from_args(build_parser().parse_args(config_to_argv(config))) == config
    assert "--deterministic" not in config_to_argv(MockServerConfig())
