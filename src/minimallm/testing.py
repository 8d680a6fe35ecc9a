"""Test your own code against minimallm without a server: a transport driven by a handler.

Like httpx's ``MockTransport``, :class:`MockTransport` answers every HTTP attempt by
calling your function, so the backend's whole machinery (cache, single flight, retries,
flow control, batches, progress) runs as it does against a real endpoint::

    from minimallm import MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm
    from minimallm.testing import MockResponse, MockTransport

    def handler(request):
        prompt = request.json["messages"][-1]["content"]
        if "quota" in prompt:
            return MockResponse(429, json={"error": {"message": "slow down"}})
        return {"choices": [{"message": {"role": "assistant", "content": prompt.upper()}}]}

    cfg = MinimaLlmConfig(base_url="http://test/v1", model="m")
    backend = OpenAIMinimaLlm(cfg, transport=MockTransport(handler))

The handler takes a :class:`MockRequest` and returns a JSON object (a dict: a 200
answer), a :class:`MockResponse`, or raises ``ConnectionError`` (or any ``OSError``:
the connection broke, which minimallm retries). It may be ``async`` (then it may
``await trio.sleep(...)`` for latency, e.g. under ``trio.testing.MockClock``); a
synchronous handler runs on the trio thread and must not block.
"""

from __future__ import annotations

import gzip
import inspect
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeAlias

import trio

from minimallm._http import errors as http_errors
from minimallm._http.reply import HttpReply

__all__ = ["Handler", "MockRequest", "MockResponse", "MockTransport"]


@dataclass(frozen=True, slots=True)
class MockRequest:
    """One attempt as the server would see it: the URL, the headers (names lower-case;
    the API key shown as ``Bearer <redacted>``) and the JSON body."""

    url: str
    headers: Mapping[str, str]
    json: Any


@dataclass(frozen=True, slots=True)
class MockResponse:
    """An answer: ``status``, then ``json`` (encoded for you) or raw ``body`` bytes, and
    ``headers`` (e.g. ``{"retry-after": "2"}``)."""

    status: int = 200
    json: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


Handler: TypeAlias = Callable[
    [MockRequest], "Mapping[str, Any] | MockResponse | Awaitable[Mapping[str, Any] | MockResponse]"
]


class MockTransport:
    """Pass as ``OpenAIMinimaLlm(cfg, transport=MockTransport(handler))``. Counts the
    attempts it answered (:attr:`requests`)."""

    __slots__ = ("_handler", "requests")

    def __init__(self, handler: Handler) -> None:
        if not callable(handler):
            raise TypeError(
                f"MockTransport needs a function of one MockRequest, got {type(handler).__name__}"
            )
        self._handler = handler
        self.requests = 0
        """Attempts answered (or raised) by the handler so far."""

    def __repr__(self) -> str:
        return f"<MockTransport requests={self.requests}>"

    def __call__(self, url: str) -> _MockConnection:
        """(minimallm) One Worker's connection to ``url``."""
        return _MockConnection(self, url)

    async def _answer(
        self, url: str, headers: tuple[tuple[bytes, bytes], ...], body: bytes
    ) -> HttpReply:
        seen = {name.decode("latin-1"): value.decode("latin-1") for name, value in headers}
        if "authorization" in seen:
            seen["authorization"] = "Bearer <redacted>"
        if seen.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.requests += 1
        answer = self._handler(MockRequest(url, seen, json.loads(body)))
        if inspect.isawaitable(answer):
            answer = await answer
        if isinstance(answer, MockResponse):
            data = answer.body
            if data is None:
                data = b"" if answer.json is None else json.dumps(answer.json).encode()
            names = {k.lower(): v for k, v in answer.headers.items()}
            return HttpReply(answer.status, names, data)
        if isinstance(answer, Mapping):
            return HttpReply(200, {"content-type": "application/json"}, json.dumps(answer).encode())
        raise TypeError(
            "a MockTransport handler returns a dict (a 200 JSON answer) or a MockResponse, "
            f"not {type(answer).__name__}"
        )


class _MockConnection:
    """One Worker's end of a :class:`MockTransport` (minimallm's transport protocol)."""

    __slots__ = ("_scope", "_transport", "_url")

    def __init__(self, transport: MockTransport, url: str) -> None:
        self._transport = transport
        self._url = url
        self._scope: trio.CancelScope | None = None

    async def post(self, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> HttpReply:
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                return await self._transport._answer(self._url, headers, body)
            except OSError as exc:
                raise http_errors.ReadError(
                    f"the handler raised {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                self._scope = None
        raise http_errors.ReadError("the attempt was interrupted")

    def interrupt(self) -> None:
        if self._scope is not None:
            self._scope.cancel()

    async def aclose(self) -> None:
        self._scope = None
