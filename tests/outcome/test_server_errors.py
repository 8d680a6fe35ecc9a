"""What a server sends back, however odd, becomes a failure value with a message a
person can act on, and the key never survives in it, whole or in part."""

from __future__ import annotations

import json
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fakes import FakeServer, Script
from minimallm import MinimaLlmConfig, MinimaLlmFailure, MinimaLlmRequest, OpenAIMinimaLlm
from minimallm._http.transport import BODY_KEEP_CHARS, HttpReply, outcome_from_reply
from minimallm._outcome.attempts import AttemptError, AttemptSuccess
from minimallm._outcome.explain import EXPLANATION_CHARS, explanation
from minimallm._outcome.redact import MIN_PIECE, REDACTED, SNIPPET_CHARS, redact, snippet
from minimallm._runtime.serve import RuntimeOptions

MISSING = "The model 'x' does not exist"

EXPLAINED = [
    (json.dumps({"error": {"message": MISSING, "type": "invalid_request_error"}}), MISSING),
    (json.dumps({"error": MISSING}), MISSING),  # Ollama, TGI
    (json.dumps({"detail": "Not Found"}), "Not Found"),  # FastAPI
    (
        json.dumps({"detail": [{"loc": ["body", "messages"], "msg": "field required"}]}),
        "body.messages: field required",
    ),
    (json.dumps({"object": "error", "message": MISSING, "code": 404}), MISSING),  # old vLLM
    (json.dumps("just a string"), "just a string"),
    (
        "upstream connect error or disconnect/reset before headers\nmore",
        "upstream connect error or disconnect/reset before headers",
    ),
    (
        "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        "502 Bad Gateway",
    ),
    (json.dumps({"error": {"message": "two\n lines\x1b[31m red"}}), "two lines [31m red"),
]


@pytest.mark.parametrize(("body", "expected"), EXPLAINED)
def test_the_message_carries_the_servers_explanation(body: str, expected: str) -> None:
    outcome = outcome_from_reply(HttpReply(404, {}, body.encode()))
    assert isinstance(outcome, AttemptError)
    assert outcome.message == f"HTTP 404: {expected}"


@pytest.mark.parametrize(
    "body",
    [b"", b"   ", json.dumps({"choices": []}).encode(), b"\x00\x01\x02\xff" * 50, b"[1, 2]"],
)
def test_nothing_to_explain_leaves_the_status_alone(body: bytes) -> None:
    outcome = outcome_from_reply(HttpReply(500, {}, body))
    assert isinstance(outcome, AttemptError) and outcome.message == "HTTP 500"


def test_a_long_explanation_is_bounded_and_the_body_kept_for_redaction() -> None:
    body = json.dumps({"error": {"message": "x" * 50_000}}).encode()
    outcome = outcome_from_reply(HttpReply(400, {}, body))
    assert isinstance(outcome, AttemptError)
    assert outcome.message == "HTTP 400: " + "x" * EXPLANATION_CHARS
    assert outcome.body_snippet is not None and len(outcome.body_snippet) == BODY_KEEP_CHARS
    huge = json.dumps({"error": {"message": "x" * 100_000}}).encode()  # not decoded at all
    assert explanation(huge) is None


def test_a_200_with_an_error_instead_of_choices_says_why() -> None:
    body = json.dumps({"error": {"message": "upstream timed out"}}).encode()
    outcome = outcome_from_reply(HttpReply(200, {}, body))
    assert isinstance(outcome, AttemptError) and outcome.error_type == "MalformedResponse"
    assert outcome.message == "2xx body has no 'choices': upstream timed out"


@pytest.mark.parametrize("opener", [b"[", b'{"a":'])
def test_a_2xx_body_nested_too_deep_is_a_malformed_response(opener: bytes) -> None:
    body = opener * 100_000
    outcome = outcome_from_reply(HttpReply(200, {}, body))
    assert isinstance(outcome, AttemptError)
    assert (outcome.error_type, outcome.retryable) == ("MalformedResponse", True)
    deep = outcome_from_reply(HttpReply(400, {}, body))  # and in an error body
    assert isinstance(deep, AttemptError) and deep.status == 400


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(
            st.sampled_from(["choices", "message", "content", "error", "detail", "usage", "x"]),
            inner,
            max_size=4,
        )
    ),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from([200, 201, 204, 299, 400, 404, 429, 500, 503]) | st.integers(100, 999),
    body=st.binary(max_size=300)
    | JSON.map(lambda v: json.dumps(v).encode())
    | st.builds(lambda n, c: c * n, st.integers(1, 5000), st.sampled_from([b"[", b'{"a":'])),
    headers=st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "content-type"]), st.text(max_size=30)
    ),
)
def test_anything_a_server_sends_becomes_an_outcome(
    status: int, body: bytes, headers: dict[str, str]
) -> None:
    outcome = outcome_from_reply(HttpReply(status, headers, body), wall_clock=lambda: 0.0)
    assert isinstance(outcome, AttemptSuccess | AttemptError)
    if isinstance(outcome, AttemptError):
        assert "\n" not in outcome.message


# -- redaction ----------------------------------------------------------------------------

KEY = "sk-SECRETPROBE-0123456789abcdefghij"


def test_redact_replaces_every_whole_key_and_its_json_escaped_form() -> None:
    slashed = 'ab/cd"ef\\gh-0123456789'
    text = f"a {KEY} b {KEY} " + json.dumps({"k": slashed}) + ' "ab\\/cd'
    out = redact(text, KEY)
    assert KEY not in out and out.count(REDACTED) == 2
    out = redact(
        json.dumps({"k": slashed}) + " " + json.dumps(slashed).replace("/", "\\/"), slashed
    )
    assert "ab" not in out
    assert redact("nothing", None) == "nothing" == redact("nothing", "")


def test_a_key_echoed_across_the_cut_is_redacted_before_cutting() -> None:
    """The issue's probe: the 300-character cut fell inside the echoed key."""
    body = ("x" * 280 + f"Bearer {KEY} and more").encode()
    out = snippet(body, KEY)
    assert "SECRETPROBE" not in out and "sk-S" not in out
    assert out.startswith("x" * 280 + "Bearer ***")
    assert len(out) <= SNIPPET_CHARS


def test_a_piece_of_the_key_left_by_an_earlier_cut_is_redacted() -> None:
    kept = ("y" * 50 + "Bearer " + KEY)[:70]  # cut inside the key before we saw it
    out = snippet(kept, KEY)
    assert out == "y" * 50 + "Bearer " + REDACTED
    assert snippet("ends with sk-", KEY) == "ends with sk-"  # too short to be a key's piece


def test_the_marker_follows_the_redaction() -> None:
    out = snippet("z" * 10 + KEY[:20] + "tail", KEY, 20, marker="…")
    assert out == "z" * 10 + REDACTED + "…"


@settings(max_examples=500, deadline=None)
@given(
    before=st.text(alphabet=" .,:{}\"'<>!?()[]\n\t", max_size=400),
    after=st.text(alphabet=" .,:{}\"'<>!?()[]\n\t", max_size=400),
    copies=st.integers(1, 3),
    transport_cut=st.integers(0, 2000),
    limit=st.integers(0, 600),
    marker=st.sampled_from(["", "…"]),
)
def test_no_piece_of_the_key_ever_survives(
    before: str, after: str, copies: int, transport_cut: int, limit: int, marker: str
) -> None:
    body = before + (KEY + after) * copies
    for text in (body, body[:transport_cut], body.encode()[:transport_cut]):
        out = snippet(text, KEY, limit, marker=marker)
        assert len(out) <= max(limit, len(REDACTED) + len(marker)) or limit < len(marker)
        for size in range(MIN_PIECE, len(KEY) + 1):
            for start in range(len(KEY) - size + 1):
                assert KEY[start : start + size] not in out


# -- the whole path: the runtime redacts with _redact.snippet ---------------------------


async def test_a_failure_never_shows_a_piece_of_an_echoed_key() -> None:
    body = json.dumps({"error": {"message": "x" * 270 + f" invalid key Bearer {KEY}"}})
    server = FakeServer(lambda c, n: Script(status=401, body=body.encode()))
    cfg = MinimaLlmConfig(base_url="http://fake.invalid", model="m", api_key=KEY)
    async with OpenAIMinimaLlm(
        cfg, options=RuntimeOptions(server.transport, random.Random(0))
    ) as backend:
        failure = await backend.generate(MinimaLlmRequest("r", [{"role": "user", "content": "q"}]))
    assert isinstance(failure, MinimaLlmFailure)
    assert failure.body_snippet is not None and len(failure.body_snippet) <= SNIPPET_CHARS
    for text in (failure.message, failure.body_snippet, repr(failure)):
        assert "SECRETPROBE" not in text and "sk-SE" not in text
    assert failure.message.startswith("HTTP 401: xxx")
