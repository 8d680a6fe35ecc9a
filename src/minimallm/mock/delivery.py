"""How the mock answers a request once its fate is decided (a :class:`Verdict`): a
refusal, a hang, a fault, a shaped error, or a completion after its latency. The
:class:`~minimallm.mock.server.MockServer` reads requests and decides; this writes."""

from __future__ import annotations

from enum import Enum
from functools import partial
from typing import Any

import trio

from minimallm._http.server import HttpRequest, RequestParser, render_response
from minimallm.mock.bodies import SHAPE_ERRORS, completion_body, error_response, models_body
from minimallm.mock.config import MockServerConfig
from minimallm.mock.decide import BLACKHOLE, Verdict
from minimallm.mock.faults import OK
from minimallm.mock.listeners import wait_watching
from minimallm.mock.sockets import ServerStream
from minimallm.mock.state import MockState

__all__ = ["MODEL_PATHS", "After", "Delivery"]

MODEL_PATHS = frozenset({"/v1/models", "/models"})


class After(Enum):
    KEEP = "keep"  # the connection may serve another request
    CLOSE = "close"  # close it gracefully
    RESET = "reset"  # close it with an RST


class Delivery:
    """Writes answers for one mock server (its config and counters)."""

    __slots__ = ("_config", "_state")

    def __init__(self, config: MockServerConfig, state: MockState) -> None:
        self._config = config
        self._state = state

    async def deliver(
        self,
        stream: ServerStream,
        parser: RequestParser,
        request: HttpRequest,
        body: Any,
        verdict: Verdict,
        arrived: float,
        shape: str | None = None,
    ) -> After:
        keep = request.keep_alive
        after = After.KEEP if keep else After.CLOSE
        kind, headers = verdict.kind, verdict.headers
        if verdict.status is not None:  # a refusal: rate limit, capacity, storm
            msg = f"mock {kind}: HTTP {verdict.status}"
            code = self._config.error_code
            await stream.send_all(error_response(verdict.status, msg, keep, headers, code))
            return after
        if request.path in MODEL_PATHS:
            await stream.send_all(
                render_response(200, models_body(self._config.model), keep_alive=keep)
            )
            return after
        if kind in ("hang", BLACKHOLE):
            await wait_watching(stream, parser, trio.sleep_forever)
            return After.CLOSE
        answer_at = arrived + verdict.latency_s
        if answer_at > trio.current_time() and not await wait_watching(
            stream, parser, partial(trio.sleep_until, answer_at)
        ):
            return After.CLOSE
        if self._state.blackholed(trio.current_time()):  # the answer is lost on the way
            await wait_watching(stream, parser, trio.sleep_forever)
            return After.CLOSE
        if kind == "reset":
            return After.RESET
        if kind == "malformed":
            page = b"<html>mock: not JSON"
            await stream.send_all(
                render_response(200, page, keep_alive=keep, extra_headers=headers)
            )
            return after
        if kind.isdigit():
            msg = f"mock fault: injected HTTP {kind}"
            code = self._config.error_code
            await stream.send_all(error_response(int(kind), msg, keep, headers, code))
            return after
        if shape in SHAPE_ERRORS and kind == OK:
            status, error = SHAPE_ERRORS[shape]
            await stream.send_all(
                render_response(status, error, keep_alive=keep, extra_headers=headers)
            )
            return after
        payload = self.completion(body, kind, shape)
        if payload is None:
            await self._responder_failed(stream, keep)
            return after
        if kind == "cut":
            full = render_response(200, payload, keep_alive=False)
            await stream.send_all(full[: len(full) - max(1, len(payload) // 2)])
            return After.CLOSE
        await stream.send_all(render_response(200, payload, keep_alive=keep, extra_headers=headers))
        return after

    def completion(self, body: dict[str, Any], kind: str, shape: str | None) -> bytes | None:
        """The 200 body for ``ok``, ``cut``, ``null`` and ``nochoices`` (in ``shape``);
        None if the responder raised."""
        text: str | None = None
        if kind != "null":
            try:
                text = self._config.responder(body)
            # The responder is user code; a server answers 500 when its code fails.
            except Exception:
                return None
        return completion_body(
            body,
            text,
            number=self._state.next_answer_number(),
            default_model=self._config.model,
            with_choices=kind != "nochoices",
            deterministic=self._config.deterministic,
            shape=shape,
        )

    async def _responder_failed(self, stream: ServerStream, keep: bool) -> None:
        self._state.responder_failed()
        await stream.send_all(error_response(500, "mock responder raised", keep_alive=keep))
