"""A success carries its body's decoded ``usage``: the token details a batch reads from
it are the response's own (``cached_tokens``, ``reasoning_tokens``), whatever the
usage holds."""

from __future__ import annotations

import json
import time
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from minimallm._http.reply import HttpReply, LazyHeaders
from minimallm._outcome.attempts import AttemptSuccess
from minimallm._outcome.reply import outcome_from_reply
from minimallm._progress.tokens import usage_details
from minimallm._types import MinimaLlmResponse

HEAD = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n"

counts = st.one_of(
    st.integers(-5, 10**9), st.booleans(), st.floats(allow_nan=False), st.text(), st.none()
)
details = st.one_of(
    st.dictionaries(st.sampled_from(["cached_tokens", "reasoning_tokens", "audio_tokens"]), counts),
    counts,
    st.lists(counts, max_size=2),
)
usages = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "prompt_tokens": counts,
            "prompt_tokens_details": details,
            "completion_tokens_details": details,
        },
    ),
    counts,
)


@given(usage=usages, with_usage=st.booleans())
def test_the_details_from_the_parsed_usage_are_the_responses_own(
    usage: Any, with_usage: bool
) -> None:
    body: dict[str, Any] = {"choices": [{"message": {"content": "hi"}}]}
    if with_usage:
        body["usage"] = usage
    reply = HttpReply(200, LazyHeaders(HEAD), json.dumps(body).encode())
    success = outcome_from_reply(reply, wall_clock=time.time)
    assert isinstance(success, AttemptSuccess) and success.usage is not None
    response = MinimaLlmResponse("r", success.text, success.raw)
    assert usage_details(success.usage) == (response.cached_tokens, response.reasoning_tokens)
