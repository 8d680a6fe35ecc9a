"""The OpenAI-compatible server in front of one backend, on raw trio sockets.

Endpoints: ``POST /v1/chat/completions`` (also ``/chat/completions``), ``GET
/v1/models`` (also ``/models``) and ``GET /health`` (no key needed; says ``ok`` or
``draining`` and the counters). The request parser and response writer are the ones the
mock server uses (:mod:`minimallm._http.server`).

One connection is served by one task, one request at a time (pipelined requests are
answered in order); many connections share the backend, hence its flow control, its
cache and its single flight: identical prompts in flight at once reach the upstream
once.

Draining (:meth:`ChatServer.drain`, on SIGTERM): the listeners close, connections
waiting for a request close, requests being answered finish and their connection then
closes; :meth:`ChatServer.run` returns once every connection is gone.
"""

from __future__ import annotations

import itertools
import json
import sys
from dataclasses import dataclass
from functools import partial
from typing import Any

import trio

from minimallm._backend import OpenAIMinimaLlm
from minimallm._errors import MinimaLlmError
from minimallm._http.server import (
    CONTINUE_RESPONSE,
    HttpError,
    HttpRequest,
    RequestParser,
    decode_body,
    render_response,
)
from minimallm._types import MinimaLlmResponse
from minimallm.serve.auth import key_accepted
from minimallm.serve.translate import ClientError, answer_of, error_body, parse_chat_request
from minimallm.serve.translate import sse_events as _sse_events

__all__ = ["CHAT_PATHS", "ChatServer", "ServeOptions", "ServeStats"]

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
MODEL_PATHS = frozenset({"/v1/models", "/models"})
HEALTH_PATHS = frozenset({"/health", "/healthz", "/v1/health"})
_RECV_BYTES = 65536
_SERVER = "minimallm-serve"


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """Where to listen and how to answer. ``key``: what clients must present as
    ``Authorization: Bearer <key>`` (None: nothing); ``force_model``: send the
    configured model whatever the client names."""

    host: str = "127.0.0.1"
    port: int = 8990
    force_model: bool = False
    key: bytes | None = None

    def __repr__(self) -> str:
        key = "set" if self.key is not None else "none"
        return (
            f"ServeOptions(host={self.host!r}, port={self.port}, "
            f"force_model={self.force_model}, key={key})"
        )


@dataclass(slots=True)
class ServeStats:
    """Counters since start: chat requests received, answered from the cache, answered
    with an error status, in flight now; connections open now."""

    requests: int = 0
    cache_hits: int = 0
    errors: int = 0
    in_flight: int = 0
    connections: int = 0

    def as_dict(self) -> dict[str, int]:
        """The counters as a JSON-ready dict."""
        return {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "errors": self.errors,
            "in_flight": self.in_flight,
            "connections": self.connections,
        }


class _Connection:
    """One client connection's cancel scope for the wait between requests (the only
    place a drain may interrupt it)."""

    __slots__ = ("idle",)

    def __init__(self) -> None:
        self.idle: trio.CancelScope | None = None


class ChatServer:
    """Serves ``backend`` to OpenAI clients; ``run`` until :meth:`drain`."""

    def __init__(self, backend: OpenAIMinimaLlm, options: ServeOptions) -> None:
        self.backend = backend
        self.options = options
        self.stats = ServeStats()
        self.address: tuple[str, int] | None = None
        self._draining = trio.Event()
        self._connections: set[_Connection] = set()
        self._ids = itertools.count(1)
        self._models = json.dumps(
            {
                "object": "list",
                "data": [
                    {
                        "id": backend.cfg.model,
                        "object": "model",
                        "created": 0,
                        "owned_by": "minimallm",
                    }
                ],
            }
        ).encode()

    def __repr__(self) -> str:
        state = "draining" if self._draining.is_set() else "serving"
        return f"<ChatServer {state} {self.address} {self.stats.as_dict()}>"

    @property
    def draining(self) -> bool:
        """True once :meth:`drain` was called."""
        return self._draining.is_set()

    def drain(self) -> None:
        """Stop accepting, close idle connections, let requests in progress finish."""
        self._draining.set()
        for conn in self._connections:
            if conn.idle is not None:
                conn.idle.cancel()

    async def run(self, *, task_status: trio.TaskStatus[tuple[str, int]]) -> None:
        """Listen (``task_status.started((host, port))`` once bound: the real port for
        port 0), serve until :meth:`drain`, return when every connection is closed."""
        listeners = await trio.open_tcp_listeners(self.options.port, host=self.options.host)
        if self.options.port == 0:  # keep one address: each would get its own free port
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        sockname = listeners[0].socket.getsockname()
        self.address = (str(sockname[0]), int(sockname[1]))
        async with trio.open_nursery() as handlers, trio.open_nursery() as accepting:
            await accepting.start(
                partial(
                    trio.serve_listeners,
                    self._serve_connection,
                    listeners,
                    handler_nursery=handlers,
                )
            )
            task_status.started(self.address)
            await self._draining.wait()
            accepting.cancel_scope.cancel()  # serve_listeners closes the listeners

    async def _serve_connection(self, stream: trio.SocketStream) -> None:
        conn = _Connection()
        self._connections.add(conn)
        self.stats.connections += 1
        parser = RequestParser()
        try:
            while True:
                try:
                    request = parser.next_request()
                except HttpError as exc:
                    body = error_body(exc.message, "invalid_request_error")
                    await stream.send_all(self._render(exc.status, body, keep_alive=False))
                    return
                if request is None:
                    if parser.take_continue():
                        await stream.send_all(CONTINUE_RESPONSE)
                    if self._draining.is_set():
                        return
                    data = b""  # stays empty when a drain ends the wait
                    with trio.CancelScope() as conn.idle:
                        data = await stream.receive_some(_RECV_BYTES)
                    conn.idle = None
                    if not data:  # the client closed, or a drain
                        return
                    parser.feed(data)
                    continue
                try:
                    status, body, content_type, headers = await self._answer(request)
                except Exception as exc:  # a bug here must cost one answer, not the server
                    self.stats.errors += 1
                    print(f"minimallm serve: internal error: {exc!r}", file=sys.stderr)
                    message = f"minimallm serve failed on this request: {type(exc).__name__}"
                    status, body = 500, error_body(message, "server_error")
                    content_type, headers = _JSON, ()
                keep = request.keep_alive and not self._draining.is_set()
                response = self._render(
                    status, body, keep_alive=keep, content_type=content_type, headers=headers
                )
                await stream.send_all(response)
                if not keep:
                    return
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the client went away
        finally:
            self._connections.discard(conn)
            self.stats.connections -= 1
            with trio.CancelScope(shield=True):
                await stream.aclose()

    @staticmethod
    def _render(
        status: int,
        body: bytes,
        *,
        keep_alive: bool,
        content_type: str = "application/json",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        return render_response(
            status,
            body,
            keep_alive=keep_alive,
            content_type=content_type,
            extra_headers=headers,
            server=_SERVER,
        )

    async def _answer(
        self, request: HttpRequest
    ) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
        path = request.path
        if path in HEALTH_PATHS and request.method == "GET":
            state = "draining" if self._draining.is_set() else "ok"
            body = json.dumps({"status": state, **self.stats.as_dict()}).encode()
            return (503 if self._draining.is_set() else 200), body, "application/json", ()
        if path not in CHAT_PATHS and path not in MODEL_PATHS:
            message = f"no such endpoint {path[:100]!r}: this server answers POST "
            message += "/v1/chat/completions, GET /v1/models and GET /health"
            return 404, error_body(message, "invalid_request_error"), "application/json", ()
        if not key_accepted(self.options.key, request.headers.get("authorization")):
            message = "a key is required: send 'Authorization: Bearer <MINIMALLM_SERVE_KEY>'"
            body = error_body(message, "invalid_request_error", "invalid_api_key")
            return 401, body, "application/json", (("www-authenticate", "Bearer"),)
        if path in MODEL_PATHS:
            if request.method != "GET":
                return _method_not_allowed(request.method, "GET")
            return 200, self._models, "application/json", ()
        if request.method != "POST":
            return _method_not_allowed(request.method, "POST")
        return await self._chat(request)

    async def _chat(
        self, request: HttpRequest
    ) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
        stats = self.stats
        stats.requests += 1
        try:
            call = parse_chat_request(
                decode_body(request.headers, request.body),
                request_id=f"serve-{next(self._ids)}",
                configured_model=self.backend.cfg.model,
                force_model=self.options.force_model,
            )
        except HttpError as exc:
            stats.errors += 1
            return exc.status, error_body(exc.message, "invalid_request_error"), _JSON, ()
        except ClientError as exc:
            stats.errors += 1
            return exc.status, error_body(str(exc), exc.kind), _JSON, ()
        stats.in_flight += 1
        try:
            result = await self.backend.generate(call.request)
        except MinimaLlmError as exc:  # the backend stopped or failed: not the client's fault
            stats.errors += 1
            return 503, error_body(str(exc), "server_error"), _JSON, ()
        finally:
            stats.in_flight -= 1
        status, body = answer_of(result)
        cached = isinstance(result, MinimaLlmResponse) and result.cached
        headers = (("x-minimallm-cache", "hit" if cached else "miss"),)
        if cached:
            stats.cache_hits += 1
        if status != 200:
            stats.errors += 1
            return status, body, _JSON, headers
        if not call.stream:
            return status, body, _JSON, headers
        events = b"".join(_sse_events(_loads(body), include_usage=call.include_usage))
        return 200, events, "text/event-stream", (*headers, ("cache-control", "no-cache"))


_JSON = "application/json"


def _loads(body: bytes) -> dict[str, Any]:
    data = json.loads(body)
    return data if isinstance(data, dict) else {}


def _method_not_allowed(
    method: str, allowed: str
) -> tuple[int, bytes, str, tuple[tuple[str, str], ...]]:
    message = f"method {method[:20]} not allowed here; use {allowed}"
    return 405, error_body(message, "invalid_request_error"), _JSON, (("allow", allowed),)
