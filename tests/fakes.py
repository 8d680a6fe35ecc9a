"""A scriptable in-process HTTP transport for virtual-time tests of the actors.

Every attempt is recorded with its (virtual) send and end time, and the concurrency
seen by the "server" is tracked, so tests can assert limits and pacing exactly.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import trio

from minimallm import BatchConfig, MinimaLlmConfig, MinimaLlmRequest, OpenAIMinimaLlm
from minimallm._http import errors as http_errors
from minimallm._http.transport import HttpReply
from minimallm._runtime.serve import RuntimeOptions

OK_BODY = {"choices": [{"message": {"role": "assistant", "content": ""}}]}


@dataclass
class Script:
    """What the fake server does for one attempt: wait ``latency`` then answer
    ``status`` (or raise ``raises``)."""

    latency: float = 0.0
    status: int = 200
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)
    raises: BaseException | None = None


@dataclass
class Sent:
    content: str
    start: float
    end: float | None = None
    cancelled: bool = False


class FakeServer:
    """Shared by all FakeTransports of a runtime; ``responder(content, n)`` scripts the
    n-th attempt (0-based) for a prompt content."""

    def __init__(self, responder: Callable[[str, int], Script] | None = None) -> None:
        self.responder = responder or (lambda content, n: Script())
        self.sent: list[Sent] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.attempts_by_content: dict[str, int] = {}
        self.transports: list[FakeTransport] = []

    def transport(self, url: str) -> FakeTransport:
        t = FakeTransport(self)
        self.transports.append(t)
        return t

    async def handle(self, body: bytes) -> HttpReply:
        payload = json.loads(body)
        content = payload["messages"][-1]["content"]
        n = self.attempts_by_content.get(content, 0)
        self.attempts_by_content[content] = n + 1
        script = self.responder(content, n)
        record = Sent(content, trio.current_time())
        self.sent.append(record)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            await trio.sleep(script.latency)
        except trio.Cancelled:
            record.cancelled = True
            raise
        finally:
            self.in_flight -= 1
            record.end = trio.current_time()
        if script.raises is not None:
            raise script.raises
        if script.body is not None:
            return HttpReply(script.status, script.headers, script.body)
        answer = {
            "choices": [{"message": {"role": "assistant", "content": f"echo: {content}"}}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }
        return HttpReply(script.status, script.headers, json.dumps(answer).encode())


class FakeTransport:
    """One fake connection: ``interrupt()`` ends a request in progress like closing a
    real socket does (the post raises a transport error)."""

    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self.closed = False
        self.interrupted = 0
        self._scope: trio.CancelScope | None = None

    async def post(self, headers: tuple[tuple[bytes, bytes], ...], body: bytes) -> HttpReply:
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                return await self.server.handle(body)
            finally:
                self._scope = None
        raise http_errors.ReadError("connection interrupted")

    def interrupt(self) -> None:
        if self._scope is not None:
            self.interrupted += 1
            self._scope.cancel()

    async def aclose(self) -> None:
        self.closed = True


def drain(channel: trio.MemoryReceiveChannel[Any]) -> list[Any]:
    """Every message waiting in ``channel`` now, without waiting."""
    out = []
    while True:
        try:
            out.append(channel.receive_nowait())
        except trio.WouldBlock:
            return out


def backend_for(server: FakeServer, **cfg: Any) -> OpenAIMinimaLlm:
    """A backend whose transport is ``server`` (rpm 0, no jitter, 4 items at once;
    ``cfg``: other settings)."""
    settings: dict[str, Any] = {
        "base_url": "http://fake.invalid",
        "model": "m",
        "rpm": 0,
        "base_backoff_s": 0.5,
        "jitter": 0.0,
        "batch": BatchConfig(heartbeat_s=0, num_workers=4),
    }
    settings.update(cfg)
    return OpenAIMinimaLlm(
        MinimaLlmConfig(**settings), options=RuntimeOptions(server.transport, random.Random(0))
    )


def req(i: int, content: str | None = None) -> MinimaLlmRequest:
    """Request ``id{i}`` asking ``content`` (``p{i}`` by default)."""
    return MinimaLlmRequest(f"id{i}", [{"role": "user", "content": content or f"p{i}"}])
