"""The OpenAI-compatible mock server on its own plain sockets (``sockets.py``).

Endpoints: ``POST /v1/chat/completions`` (also ``/chat/completions``), ``GET /v1/models``
(also ``/models``), and control endpoints that are neither counted nor recorded:
``GET /mock/stats`` (the counters as JSON, for a server in another process),
``GET /mock/arrivals`` (the arrival stamps), ``GET /mock/batches`` (the Batch API's
counters) and ``POST /mock/reset``. ``/v1/files`` and ``/v1/batches`` are the Batch
API of ``batch_api.py``.

One chat request goes: parse -> count, decide and record (``state.py`` around the pure
``decide.py``, under a lock, so another thread may read ``stats``/``requests`` or call
``reset()``) -> answer a refusal at once, or take a capacity slot (queue mode) and wait
the latency while watching the socket (a client that goes away ends the wait and closes
the connection) -> answer. Refuse outages close and reopen the listener
(``listeners.py``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from typing import Any

import trio

from minimallm._http.server import (
    CONTINUE_RESPONSE,
    HttpError,
    HttpRequest,
    RequestParser,
    decode_body,
    render_response,
)
from minimallm.mock.batch_api import MockBatchApi
from minimallm.mock.bodies import error_response
from minimallm.mock.config import MockServerConfig, last_message_text
from minimallm.mock.decide import Verdict
from minimallm.mock.delivery import MODEL_PATHS, After, Delivery
from minimallm.mock.faults import NO_DIRECTIVES, OK, DirectiveError, parse_directives
from minimallm.mock.listeners import (
    Connections,
    RefusalWindow,
    reset_with_rst,
    serve_listening,
    wait_watching,
)
from minimallm.mock.records import Arrival, MockStats, RecordedRequest
from minimallm.mock.sockets import ServerStream, open_listeners
from minimallm.mock.state import MockState
from minimallm.mock.timeline import Outage

__all__ = ["MockServer", "serve_mock"]

CHAT_PATHS = frozenset({"/v1/chat/completions", "/chat/completions"})
_RECV_BYTES = 65536


def _json_body(raw: bytes) -> Any:
    """The decoded body (None when empty); raises ValueError as ``json.loads`` does.
    A body that opens as UTF-8 JSON (``{`` and no NUL after it) is decoded first:
    ``json.loads`` on bytes guesses the encoding (UTF-16/32, a BOM) on every call."""
    if not raw:
        return None
    if raw[:1] == b"{" and raw[1:2] != b"\x00":
        # as json.loads(bytes) decodes; UnicodeDecodeError is a ValueError
        return json.loads(raw.decode("utf-8", "surrogatepass"))
    return json.loads(raw)


class MockServer:
    """A running mock server; ``serve_mock`` hands one back through ``nursery.start``.

    ``stats``, ``requests``, ``reset()`` and ``attempts()`` are safe from any thread.
    """

    def __init__(self, config: MockServerConfig) -> None:
        self.config = config
        self.host = config.host
        self.port = config.port
        self.state = MockState(config)
        self._connections = Connections()
        self._origin_known = trio.Event()
        self._delivery = Delivery(config, self.state)
        self._slots: trio.Semaphore | None = None
        if config.capacity is not None and config.capacity_mode == "queue":
            self._slots = trio.Semaphore(config.capacity)  # FIFO: trio's locks are fair
        self.batch_api = MockBatchApi(
            duration_s=config.batch_duration_s,
            outcomes=config.batch_outcome_map,
            answer=lambda body, kind: (
                self._delivery.completion(body, kind, None)
                if kind in ("ok", "null", "nochoices")
                else None
            ),
        )

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

    def arrivals(self) -> list[Arrival]:
        """Chat arrivals ``(time.monotonic(), outcome)``, oldest first (at most
        ``config.max_arrivals``)."""
        return self.state.arrivals()

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
        listeners = await open_listeners(self.config.host, self.config.port)
        self.port = listeners[0].socket.getsockname()[1]
        timeline = self.state.timeline
        windows: list[RefusalWindow] = [
            (p.start_s, p.end_s, label)
            for p, label in zip(timeline.phases, timeline.labels, strict=True)
            if isinstance(p, Outage) and p.mode == "refuse"
        ]
        async with trio.open_nursery() as nursery:
            await nursery.start(
                partial(
                    serve_listening,
                    listeners,
                    handler=self._handle_connection,
                    handler_nursery=nursery,
                    reopen=partial(open_listeners, self.config.host, self.port),
                    windows=windows,
                    origin=self._origin,
                    refuse=self._refuse,
                )
            )
            task_status.started(self)

    async def _origin(self) -> float:
        await self._origin_known.wait()
        origin = self.state.origin
        assert origin is not None
        return origin

    def _refuse(self, label: str) -> None:
        self.state.connections_reset(label, self._connections.reset_all())

    async def _handle_connection(self, stream: ServerStream) -> None:
        conn_id = self.state.connection_opened()
        parser = RequestParser()
        after = After.CLOSE
        try:
            with self._connections.track(conn_id, stream):
                after = await self._serve_requests(stream, parser, conn_id)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            after = After.CLOSE
        finally:
            if after is After.RESET:
                reset_with_rst(stream)
            self.state.connection_closed()
            await stream.aclose()

    async def _serve_requests(
        self, stream: ServerStream, parser: RequestParser, conn_id: int
    ) -> After:
        """Answer the connection's requests in order. A request that was already in the
        buffer when the one before it was answered (the client pipelines) waits for the
        scheduler's next turn: answering does not yield (``sockets.ServerStream``), and a
        client must not keep the server from its other connections."""
        answered = False  # a request answered since the last read
        while True:
            try:
                request = parser.next_request()
            except HttpError as exc:
                await stream.send_all(error_response(exc.status, exc.message, keep_alive=False))
                return After.CLOSE
            if request is None:
                if parser.take_continue():
                    await stream.send_all(CONTINUE_RESPONSE)
                data = await stream.receive_some(_RECV_BYTES)
                if not data:
                    return After.CLOSE
                parser.feed(data)
                answered = False
                continue
            if answered:  # pipelined: the others' turn first
                await trio.lowlevel.checkpoint()
            answered = True
            if request.path.startswith("/mock/"):
                after = await self._control(stream, request)
            elif MockBatchApi.handles(request.path):  # the Batch API (batch_api.py)
                status, body, ctype = self.batch_api.handle(
                    request.method, request.target, request.headers, request.body
                )
                keep = request.keep_alive
                await stream.send_all(
                    render_response(status, body, keep_alive=keep, content_type=ctype)
                )
                after = After.KEEP if keep else After.CLOSE
            else:
                after = await self._answer(stream, parser, conn_id, request)
            if after is not After.KEEP:
                return after

    async def _control(self, stream: ServerStream, request: HttpRequest) -> After:
        if request.path == "/mock/stats" and request.method == "GET":
            body = json.dumps(self.stats.as_dict()).encode()
            await stream.send_all(render_response(200, body, keep_alive=request.keep_alive))
        elif request.path == "/mock/arrivals" and request.method == "GET":
            body = json.dumps({"arrivals": self.arrivals()}).encode()
            await stream.send_all(render_response(200, body, keep_alive=request.keep_alive))
        elif request.path == "/mock/batches" and request.method == "GET":
            body = json.dumps(self.batch_api.counters).encode()
            await stream.send_all(render_response(200, body, keep_alive=request.keep_alive))
        elif request.path == "/mock/reset" and request.method == "POST":
            self.reset()
            await stream.send_all(render_response(200, b"{}", keep_alive=request.keep_alive))
        else:
            msg = f"no mock control endpoint {request.method} {request.path}"
            await stream.send_all(error_response(404, msg, keep_alive=request.keep_alive))
        return After.KEEP if request.keep_alive else After.CLOSE

    # --- one counted request -----------------------------------------------------

    async def _answer(
        self,
        stream: ServerStream,
        parser: RequestParser,
        conn_id: int,
        request: HttpRequest,
    ) -> After:
        # Latency counts from the request's arrival, so parsing and answering do not
        # add to it (clients would otherwise see ~2 ms more than asked at 100 ms).
        arrived = trio.current_time()
        body: Any = None
        content = ""
        directives = NO_DIRECTIVES
        problem: tuple[int, str] | None = None
        is_chat = request.path in CHAT_PATHS
        try:
            body = _json_body(decode_body(request.headers, request.body))
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
        verdict = self.state.admit(
            now=arrived,
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
        if fixed_kind is None and not self._origin_known.is_set():
            self._origin_known.set()
        try:
            if problem is not None:
                await stream.send_all(
                    error_response(problem[0], problem[1], keep_alive=request.keep_alive)
                )
                return After.KEEP if request.keep_alive else After.CLOSE
            if not (verdict.queue and self._slots is not None):
                return await self._delivery.deliver(
                    stream, parser, request, body, verdict, arrived, directives.shape
                )
            return await self._deliver_in_slot(
                stream, parser, request, body, verdict, arrived, directives.shape
            )
        finally:
            self.state.finished()

    async def _deliver_in_slot(
        self,
        stream: ServerStream,
        parser: RequestParser,
        request: HttpRequest,
        body: Any,
        verdict: Verdict,
        arrived: float,
        shape: str | None = None,
    ) -> After:
        """Queue mode: wait (watching the socket) for a capacity slot, answer holding it."""
        slots = self._slots
        assert slots is not None
        try:
            slots.acquire_nowait()
        except trio.WouldBlock:
            self.state.queue_entered()
            try:
                if not await wait_watching(stream, parser, slots.acquire):
                    return After.CLOSE
            finally:
                self.state.queue_left()
            arrived = trio.current_time()
        try:
            return await self._delivery.deliver(
                stream, parser, request, body, verdict, arrived, shape
            )
        finally:
            slots.release()


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
