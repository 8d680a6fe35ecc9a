"""The OpenAI-compatible mock server on raw trio sockets.

Endpoints: ``POST /v1/chat/completions`` (also ``/chat/completions``), ``GET /v1/models``
(also ``/models``), and two control endpoints that are neither counted nor recorded:
``GET /mock/stats`` (the counters as JSON, for a server in another process) and
``POST /mock/reset``.

One chat request goes: parse -> count and record (under a lock, so another thread may
read ``stats``/``requests`` or call ``reset()``) -> decide the outcome (capacity, then a
prompt's ``#mock:fault`` sequence, else a random fault) -> wait the latency while
watching the socket (a client that goes away ends the wait and closes the connection)
-> answer.
"""

from __future__ import annotations

import json
import math
import socket
import struct
from collections.abc import Callable
from enum import Enum
from functools import partial
from typing import Any

import trio

from minimallm.mock.bodies import completion_body, error_body, models_body, seconds_text
from minimallm.mock.config import MockServerConfig, MockStats, RecordedRequest, last_message_text
from minimallm.mock.faults import (
    NO_DIRECTIVES,
    OK,
    DirectiveError,
    Directives,
    parse_directives,
)
from minimallm.mock.http import (
    CONTINUE_RESPONSE,
    HttpError,
    HttpRequest,
    RequestParser,
    decode_body,
    render_response,
)
from minimallm.mock.state import CAPACITY, MockState

__all__ = ["MockServer", "serve_mock"]

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
MODEL_PATHS = frozenset({"/v1/models", "/models"})
_RECV_BYTES = 65536
_LINGER_ZERO = struct.pack("ii", 1, 0)


class _After(Enum):
    KEEP = "keep"  # the connection may serve another request
    CLOSE = "close"  # close it gracefully
    RESET = "reset"  # close it with an RST


class MockServer:
    """A running mock server; ``serve_mock`` hands one back through ``nursery.start``.

    ``stats``, ``requests``, ``reset()`` and ``attempts()`` are safe from any thread.
    """

    def __init__(self, config: MockServerConfig) -> None:
        self.config = config
        self.host = config.host
        self.port = config.port
        self.state = MockState(config)

    @property
    def base_url(self) -> str:
        """The OpenAI base URL clients should use, e.g. ``http://127.0.0.1:PORT/v1``."""
        host = self.host
        if host in ("", "0.0.0.0"):
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}/v1"

    @property
    def stats(self) -> MockStats:
        """A consistent snapshot of the counters."""
        return self.state.snapshot()

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent requests (at most ``config.max_records``), oldest first."""
        return self.state.records()

    def wait_for(self, predicate: Callable[[MockStats], bool], timeout_s: float = 5.0) -> bool:
        """Block until ``predicate(self.stats)`` holds (True) or the timeout (False)."""
        return self.state.wait_for(predicate, timeout_s)

    def attempts(self, content: str) -> int:
        """How many requests with this exact last-message content carried a fault
        directive since the last reset."""
        return self.state.attempts(content)

    def reset(self) -> None:
        """Forget records, counters and fault-sequence attempts (live gauges stay)."""
        self.state.reset()

    def __repr__(self) -> str:
        s = self.stats
        return (
            f"<MockServer {self.base_url} requests={s.requests_total} "
            f"in_flight={s.in_flight} connections={s.open_connections}>"
        )

    # --- serving -----------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[MockServer]) -> None:
        """Listen, report ``self`` through ``task_status`` once bound, serve until
        cancelled; cancellation closes the listener and every connection."""
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        if self.config.port == 0:
            # Port 0 on a name with several addresses binds each to a different port.
            for extra in listeners[1:]:
                await extra.aclose()
            listeners = listeners[:1]
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    trio.serve_listeners,
                    self._handle_connection,
                    listeners,
                    handler_nursery=nursery,
                )
            )
            task_status.started(self)

    async def _handle_connection(self, stream: trio.SocketStream) -> None:
        conn_id = self.state.connection_opened()
        parser = RequestParser()
        after = _After.CLOSE
        try:
            after = await self._serve_requests(stream, parser, conn_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            after = _After.CLOSE
        finally:
            if after is _After.RESET:
                stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
            self.state.connection_closed()
            await stream.aclose()

    async def _serve_requests(
        self, stream: trio.SocketStream, parser: RequestParser, conn_id: int
    ) -> _After:
        while True:
            try:
                request = parser.next_request()
            except HttpError as exc:
                await stream.send_all(self._error(exc.status, exc.message, keep_alive=False))
                return _After.CLOSE
            if request is None:
                if parser.take_continue():
                    await stream.send_all(CONTINUE_RESPONSE)
                data = await stream.receive_some(_RECV_BYTES)
                if not data:
                    return _After.CLOSE
                parser.feed(data)
                continue
            if request.path.startswith("/mock/"):
                after = await self._control(stream, request)
            else:
                after = await self._answer(stream, parser, conn_id, request)
            if after is not _After.KEEP:
                return after

    async def _control(self, stream: trio.SocketStream, request: HttpRequest) -> _After:
        if request.path == "/mock/stats" and request.method == "GET":
            body = json.dumps(self.stats.as_dict()).encode()
            await stream.send_all(render_response(200, body, keep_alive=request.keep_alive))
        elif request.path == "/mock/reset" and request.method == "POST":
            self.reset()
            await stream.send_all(render_response(200, b"{}", keep_alive=request.keep_alive))
        else:
            msg = f"no mock control endpoint {request.method} {request.path}"
            await stream.send_all(self._error(404, msg, keep_alive=request.keep_alive))
        return _After.KEEP if request.keep_alive else _After.CLOSE

    # --- one counted request -----------------------------------------------------

    async def _answer(
        self,
        stream: trio.SocketStream,
        parser: RequestParser,
        conn_id: int,
        request: HttpRequest,
    ) -> _After:
        # Latency counts from the request's arrival, so parsing and answering do not
        # add to it (clients would otherwise see ~2 ms more than asked at 100 ms).
        arrived = trio.current_time()
        body: Any = None
        content = ""
        directives = NO_DIRECTIVES
        problem: tuple[int, str] | None = None
        is_chat = request.path in CHAT_PATHS
        try:
            raw = decode_body(request.headers, request.body)
            body = json.loads(raw) if raw else None
            if is_chat:
                if request.method != "POST":
                    problem = (405, f"{request.method} not allowed here; use POST")
                elif not isinstance(body, dict):
                    problem = (400, "the body must be a JSON object")
                else:
                    content = last_message_text(body)
                    directives = parse_directives(content)
            elif request.path in MODEL_PATHS:
                if request.method != "GET":
                    problem = (405, f"{request.method} not allowed here; use GET")
            else:
                problem = (404, f"no route for {request.method} {request.path}")
        except HttpError as exc:
            problem = (exc.status, exc.message)
        except (ValueError, DirectiveError) as exc:  # bad JSON, bad messages, bad directive
            problem = (400, str(exc))

        fixed_kind = None
        if problem is not None:
            fixed_kind = str(problem[0])
        elif not is_chat:
            fixed_kind = OK
        kind, latency = self.state.admit(
            method=request.method,
            path=request.path,
            headers=request.headers,
            body=body,
            wire_bytes=len(request.body),
            conn_id=conn_id,
            fixed_kind=fixed_kind,
            content=content,
            directives=directives,
        )
        try:
            return await self._deliver(
                stream, parser, request, body, kind, arrived + latency, directives, problem
            )
        finally:
            self.state.finished()

    async def _deliver(
        self,
        stream: trio.SocketStream,
        parser: RequestParser,
        request: HttpRequest,
        body: Any,
        kind: str,
        answer_at: float,
        directives: Directives,
        problem: tuple[int, str] | None,
    ) -> _After:
        keep = request.keep_alive
        after = _After.KEEP if keep else _After.CLOSE
        if problem is not None:
            await stream.send_all(self._error(problem[0], problem[1], keep_alive=keep))
            return after
        if kind == CAPACITY:
            headers = (("retry-after", seconds_text(self.config.retry_after_s)),)
            msg = f"mock capacity of {self.config.capacity} requests in flight exceeded"
            await stream.send_all(self._error(429, msg, keep_alive=keep, headers=headers))
            return after
        if request.path in MODEL_PATHS:
            await stream.send_all(
                render_response(200, models_body(self.config.model), keep_alive=keep)
            )
            return after
        if kind == "hang":
            await self._wait_watching(stream, parser, math.inf)
            return _After.CLOSE
        if answer_at > trio.current_time() and not await self._wait_watching(
            stream, parser, answer_at
        ):
            return _After.CLOSE
        if kind == "reset":
            return _After.RESET
        if kind == "malformed":
            await stream.send_all(render_response(200, b"<html>mock: not JSON", keep_alive=keep))
            return after
        if kind.isdigit():
            await stream.send_all(self._fault_status(int(kind), directives, keep))
            return after
        payload = self._completion(body, kind)
        if payload is None:
            await self._responder_failed(stream, keep)
            return after
        if kind == "cut":
            full = render_response(200, payload, keep_alive=False)
            await stream.send_all(full[: len(full) - max(1, len(payload) // 2)])
            return _After.CLOSE
        await stream.send_all(render_response(200, payload, keep_alive=keep))
        return after

    async def _wait_watching(
        self, stream: trio.SocketStream, parser: RequestParser, deadline: float
    ) -> bool:
        """Wait until ``deadline`` (trio time) while reading the socket; False as soon as
        the client goes away (EOF or reset). Bytes that arrive (a pipelined request) are
        kept."""
        gone = False
        async with trio.open_nursery() as nursery:

            async def watch() -> None:
                nonlocal gone
                try:
                    while data := await stream.receive_some(_RECV_BYTES):
                        parser.feed(data)
                except trio.BrokenResourceError:
                    pass
                gone = True
                nursery.cancel_scope.cancel()

            nursery.start_soon(watch)
            await trio.sleep_until(deadline)
            nursery.cancel_scope.cancel()
        return not gone

    def _fault_status(self, status: int, directives: Directives, keep: bool) -> bytes:
        retry_after = directives.retry_after_s
        if retry_after is None and status == 429:
            retry_after = self.config.retry_after_s
        headers = () if retry_after is None else (("retry-after", seconds_text(retry_after)),)
        msg = f"mock fault: injected HTTP {status}"
        return self._error(status, msg, keep_alive=keep, headers=headers)

    def _completion(self, body: dict[str, Any], kind: str) -> bytes | None:
        """The 200 body for ``ok``, ``cut``, ``null`` and ``nochoices``; None if the
        responder raised."""
        text: str | None = None
        if kind != "null":
            try:
                text = self.config.responder(body)
            # The responder is user code; a server answers 500 when its code fails.
            except Exception:
                return None
        return completion_body(
            body,
            text,
            number=self.state.next_answer_number(),
            default_model=self.config.model,
            with_choices=kind != "nochoices",
            deterministic=self.config.deterministic,
        )

    async def _responder_failed(self, stream: trio.SocketStream, keep: bool) -> None:
        self.state.responder_failed()
        await stream.send_all(self._error(500, "mock responder raised", keep_alive=keep))

    @staticmethod
    def _error(
        status: int,
        message: str,
        *,
        keep_alive: bool,
        headers: tuple[tuple[str, str], ...] = (),
    ) -> bytes:
        body = error_body(status, message)
        return render_response(status, body, keep_alive=keep_alive, extra_headers=headers)


async def serve_mock(
    config: MockServerConfig | None = None,
    *,
    task_status: trio.TaskStatus[MockServer] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a mock server until cancelled. Use with ``nursery.start``, which returns the
    running MockServer (``.base_url``, ``.port``, ``.stats``, ``.requests``, ``.reset()``)::

        server = await nursery.start(serve_mock, MockServerConfig(latency_s=0.01))
    """
    await MockServer(config or MockServerConfig()).serve(task_status=task_status)
