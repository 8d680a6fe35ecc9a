"""Outcome classification (SPEC §3.4), table-driven, and the payload on the wire."""

from __future__ import annotations

import gzip
import json

import pytest

from minimallm import MinimaLlmRequest
from minimallm._http import errors as http_errors
from minimallm._http.transport import (
    HttpReply,
    build_payload,
    encode_body,
    outcome_from_exception,
    outcome_from_reply,
    request_headers,
    timeout_outcome,
)
from minimallm._outcome.attempts import AttemptError, AttemptSuccess

OK = json.dumps({"choices": [{"message": {"content": "hello"}}]}).encode()

# status -> (retried, feeds the cooldown)
STATUS_TABLE = {
    408: (True, False),
    409: (True, False),
    425: (True, False),
    429: (True, True),
    500: (True, False),
    502: (True, True),
    503: (True, True),
    504: (True, True),
    400: (False, False),
    401: (False, False),
    403: (False, False),
    404: (False, False),
    413: (False, False),
    422: (False, False),
}


@pytest.mark.parametrize(("status", "expected"), sorted(STATUS_TABLE.items()))
def test_http_status_classification(status: int, expected: tuple[bool, bool]) -> None:
    outcome = outcome_from_reply(HttpReply(status, {}, b"oops " * 100), wall_clock=lambda: 0.0)
    assert isinstance(outcome, AttemptError)
    assert (outcome.retryable, outcome.overload) == expected
    assert (outcome.error_type, outcome.status) == ("HTTPError", status)
    # the whole (short) body: the runtime redacts the key, then cuts to 300
    assert outcome.body_snippet == "oops " * 100


BODY_TABLE = [
    # (body, error_type or None for success, retryable)
    (OK, None, None),
    (b"<html>gateway</html>", "MalformedResponse", True),
    (b'{"choices": [{"message": {"con', "MalformedResponse", True),  # cut short
    (b"[1, 2]", "MalformedResponse", True),
    (b'{"object": "chat.completion"}', "MalformedResponse", True),  # no choices
    (b'{"choices": []}', "MalformedResponse", True),
    (b'{"choices": [{"message": {"content": null}}]}', "EmptyContent", False),
    (b'{"choices": [{"message": {"tool_calls": []}}]}', "EmptyContent", False),
    (b'{"choices": [{"message": {"content": 5}}]}', "EmptyContent", False),
]


@pytest.mark.parametrize(("body", "error_type", "retryable"), BODY_TABLE)
def test_2xx_body_classification(
    body: bytes, error_type: str | None, retryable: bool | None
) -> None:
    outcome = outcome_from_reply(HttpReply(200, {}, body))
    if error_type is None:
        assert isinstance(outcome, AttemptSuccess) and outcome.text == "hello"
    else:
        assert isinstance(outcome, AttemptError)
        assert (outcome.error_type, outcome.retryable, outcome.status) == (
            error_type,
            retryable,
            200,
        )


def test_usage_is_read_when_reported() -> None:
    body = json.dumps(
        {
            "choices": [{"message": {"content": "x"}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 2, "total_tokens": 9},
        }
    ).encode()
    outcome = outcome_from_reply(HttpReply(200, {}, body))
    assert isinstance(outcome, AttemptSuccess)
    assert (outcome.prompt_tokens, outcome.completion_tokens, outcome.total_tokens) == (7, 2, 9)


def test_retry_after_is_read_from_overload_answers() -> None:
    outcome = outcome_from_reply(HttpReply(429, {"retry-after": "2.5"}, b""))
    assert isinstance(outcome, AttemptError) and outcome.retry_after_s == 2.5
    outcome = outcome_from_reply(HttpReply(503, {"retry-after-ms": "250"}, b""))
    assert isinstance(outcome, AttemptError) and outcome.retry_after_s == 0.25


E = http_errors
EXCEPTION_TABLE = [
    (E.ConnectError("connection refused to 127.0.0.1:8000"), "ConnectError", True, None),
    (E.ProxyError("proxy 127.0.0.1:8888 refused the connection"), "ProxyError", True, None),
    (E.ProxyRejectedError("proxy 127.0.0.1:8888 answered 407"), "ProxyError", False, None),
    (E.ReadError("[Errno 104] Connection reset by peer"), "ConnectionError", True, None),
    (E.WriteError("broken pipe"), "ConnectionError", True, None),
    (
        E.RemoteProtocolError("Server disconnected without sending a response."),
        "RemoteProtocolError",
        True,
        None,
    ),
    (
        E.RemoteProtocolError("peer closed connection without sending complete message body"),
        "RemoteProtocolError",
        True,
        None,
    ),
    (E.DecodingError("the gzip-encoded answer is cut short"), "DecodingError", True, None),
    (E.LocalProtocolError("bad header"), "LocalProtocolError", False, None),
    (E.UnsupportedProtocol("ftp"), "UnsupportedProtocol", False, None),
    (E.TLSVerificationError("certificate verify failed"), "TLSVerificationError", False, None),
    (E.UnsupportedContentEncoding("br"), "UnsupportedContentEncoding", False, None),
    (E.ResponseTooLarge("over the cap"), "ResponseTooLarge", False, None),
    (ConnectionResetError(104, "reset"), "ConnectionError", True, None),
]


@pytest.mark.parametrize(("exc", "error_type", "retryable", "status"), EXCEPTION_TABLE)
def test_transport_exception_classification(
    exc: BaseException, error_type: str, retryable: bool, status: int | None
) -> None:
    outcome = outcome_from_exception(exc)
    assert (outcome.error_type, outcome.retryable, outcome.status) == (
        error_type,
        retryable,
        status,
    )
    assert not outcome.overload


def test_unmapped_exception_is_a_bug_not_a_failure() -> None:
    with pytest.raises(TypeError, match="unmapped"):
        outcome_from_exception(KeyError("x"))


def test_timeout_outcome_has_status_408() -> None:
    outcome = timeout_outcome(60.0)
    assert (outcome.error_type, outcome.status, outcome.retryable) == ("TimeoutError", 408, True)


def test_payload_keeps_every_message_key_and_merges_extra() -> None:
    req = MinimaLlmRequest(
        "r",
        [{"role": "user", "content": "hi", "name": "bob", "cache_control": {"type": "ephemeral"}}],
        temperature=0.0,
        max_tokens=None,
        extra={"top_p": 0.9, "stop": ["\n"]},
    )
    payload = build_payload("m", req)
    assert payload == {
        "model": "m",
        "messages": [
            {"role": "user", "content": "hi", "name": "bob", "cache_control": {"type": "ephemeral"}}
        ],
        "temperature": 0.0,
        "top_p": 0.9,
        "stop": ["\n"],
    }
    assert json.loads(gzip.decompress(encode_body(payload, compress=True))) == payload
    assert json.loads(encode_body(payload, compress=False)) == payload


def test_headers_ask_only_for_the_encodings_the_client_decodes() -> None:
    assert (b"accept-encoding", b"gzip, deflate") in request_headers(None, compress=False)


def test_headers_carry_the_key_only_when_set() -> None:
    assert (b"authorization", b"Bearer sk-x") in request_headers("sk-x", compress=False)
    assert all(k != b"authorization" for k, _ in request_headers(None, compress=True))
    assert (b"content-encoding", b"gzip") in request_headers(None, compress=True)


def test_retry_after_applies_to_any_retried_status_only() -> None:
    outcome = outcome_from_reply(HttpReply(500, {"retry-after": "3"}, b""))
    assert isinstance(outcome, AttemptError) and outcome.retry_after_s == 3.0
    outcome = outcome_from_reply(HttpReply(400, {"retry-after": "3"}, b""))
    assert isinstance(outcome, AttemptError) and outcome.retry_after_s is None
