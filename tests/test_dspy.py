"""minimallm.dspy with real DSPy (Predict, ChainOfThought) against the mock server over
loopback: sync, asyncio and trio callers; lm.kwargs on the wire; history, usage and
callbacks; force_refresh and request ids; run_dspy_batch's parse retries with exact
HTTP call counts (one DSPy parse failure = two calls: ChatAdapter, then JSONAdapter).
"""

from __future__ import annotations

import asyncio
import copy
import os
import subprocess
import sys
import warnings
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import trio

dspy = pytest.importorskip("dspy", reason="needs the [dspy] extra")

from pydantic import BaseModel  # noqa: E402

from minimallm import (  # noqa: E402
    MinimaLlmRequest,
    UsageError,
    _bridge,
    get_force_refresh,
    reset_force_refresh,
    set_force_refresh,
)
from minimallm._backend import OpenAIMinimaLlm  # noqa: E402
from minimallm._config.settings import BatchConfig, MinimaLlmConfig  # noqa: E402
from minimallm.dspy import (  # noqa: E402
    REQUEST_ERRORS,
    CallTrace,
    DSPyBatchError,
    MinimaLlmDSPyLM,
    acall_program,
    failure_of,
    request_tag,
    run_dspy_batch,
)
from minimallm.mock import MockServerConfig, MockServerThread  # noqa: E402
from minimallm.mock.dspy_responder import (  # noqa: E402
    UNPARSEABLE_TEXT,
    DSPyResponder,
    parse_dspy_prompt,
    render_answer,
)


class Judge(dspy.Signature):  # type: ignore[misc]
    """Grade how relevant the passage is to the query, 0 (not) to 3 (perfectly)."""

    query: str = dspy.InputField()
    passage: str = dspy.InputField()
    grade: int = dspy.OutputField(desc="0, 1, 2 or 3")


class Annotation(BaseModel):
    query: str
    passage: str
    grade: int | None = None
    reasoning: str | None = None


def fill(prediction: Any, obj: Annotation) -> None:
    obj.grade = int(prediction.grade)
    obj.reasoning = prediction.reasoning


class Recording:
    """A backend proxy that records each call's request id, force flag and trio run."""

    def __init__(self, backend: OpenAIMinimaLlm) -> None:
        self.backend = backend
        self.cfg = backend.cfg
        self.calls: list[tuple[str, bool, object]] = []

    @staticmethod
    def _token() -> object:
        try:
            return trio.lowlevel.current_trio_token()
        except RuntimeError:
            return None

    async def generate(self, req: MinimaLlmRequest, *, force_refresh: bool = False) -> Any:
        self.calls.append((req.request_id, force_refresh, self._token()))
        return await self.backend.generate(req, force_refresh=force_refresh)

    def generate_sync(self, req: MinimaLlmRequest, *, force_refresh: bool = False) -> Any:
        self.calls.append((req.request_id, force_refresh, None))
        return self.backend.generate_sync(req, force_refresh=force_refresh)

    async def aclose(self) -> None:
        await self.backend.aclose()


@pytest.fixture(scope="module")
def _dspy_mock() -> Iterator[tuple[MockServerThread, DSPyResponder]]:
    responder = DSPyResponder()
    with MockServerThread(MockServerConfig(responder=responder)) as mock:
        yield mock, responder


@pytest.fixture
def mock(_dspy_mock: tuple[MockServerThread, DSPyResponder]) -> MockServerThread:
    server, responder = _dspy_mock
    server.reset()
    responder.reset()
    return server


def make_config(mock: MockServerThread, **overrides: Any) -> MinimaLlmConfig:
    settings: dict[str, Any] = {
        "base_url": mock.base_url,
        "model": "mock-model",
        "rpm": 0,
        "base_backoff_s": 0.01,
        "max_backoff_s": 0.05,
        "timeout_s": 10.0,
        "batch": BatchConfig(heartbeat_s=0, num_workers=8, print_first_failures=0),
    }
    settings.update(overrides)
    return MinimaLlmConfig(**settings)


@pytest.fixture
def backend(mock: MockServerThread) -> Iterator[Recording]:
    real = OpenAIMinimaLlm(make_config(mock))
    yield Recording(real)
    real.close_sync()


def bodies(mock: MockServerThread) -> list[dict[str, Any]]:
    return [r.body for r in mock.requests]


def queries(mock: MockServerThread) -> Counter[str]:
    """HTTP calls per item (its query line)."""
    return Counter(b["messages"][-1]["content"].split("\n")[1] for b in bodies(mock))


# -- the responder ---------------------------------------------------------------------


def dspy_body(adapter: Any, signature: Any, **inputs: str) -> dict[str, Any]:
    messages = adapter.format(signature, demos=[], inputs=inputs)
    return {"model": "m", "messages": messages}


def test_responder_answers_each_adapter_in_its_own_format() -> None:
    cot = dspy.ChainOfThought(Judge).predict.signature
    for adapter in (dspy.ChatAdapter(), dspy.JSONAdapter()):
        prompt = parse_dspy_prompt(dspy_body(adapter, cot, query="q?", passage="p."))
        assert prompt is not None
        assert dict(prompt.inputs) == {"query": "q?", "passage": "p."}
        assert [(f.name, f.type) for f in prompt.outputs] == [
            ("reasoning", "str"),
            ("grade", "int"),
        ]
        assert prompt.json_mode is isinstance(adapter, dspy.JSONAdapter)
        parsed = adapter.parse(cot, render_answer(prompt))
        assert parsed["grade"] in range(4) and parsed["reasoning"].startswith("mock reasoning")


def test_responder_directives_and_fallback() -> None:
    responder = DSPyResponder()
    inputs = {"query": "x #dspy:unparseable=2", "passage": "#dspy:grade=3"}
    body = dspy_body(dspy.ChatAdapter(), Judge, **inputs)
    answers = [responder(body) for _ in range(3)]
    assert answers[:2] == [UNPARSEABLE_TEXT] * 2
    assert dspy.ChatAdapter().parse(Judge, answers[2])["grade"] == 3
    assert responder.answers(inputs) == 3
    with pytest.raises(Exception, match="failed to parse"):
        dspy.JSONAdapter().parse(Judge, UNPARSEABLE_TEXT)
    plain = {"messages": [{"role": "user", "content": "hello"}]}
    assert responder(plain) == "echo: hello"


# -- the LM: sync, asyncio, trio ---------------------------------------------------------


def test_sync_predict_and_chain_of_thought(backend: Recording, mock: MockServerThread) -> None:
    lm = MinimaLlmDSPyLM(backend, temperature=0.25, max_tokens=64, top_p=0.5)
    assert (lm.cache, lm.model) == (False, "mock-model")
    with dspy.context(lm=lm):
        plain = dspy.Predict(Judge)(query="q1", passage="p1")
        with request_tag("doc-7") as trace:
            cot = dspy.ChainOfThought(Judge)(query="q2", passage="p2")
    assert plain.grade in range(4) and isinstance(plain.grade, int)
    assert cot.grade in range(4) and cot.reasoning.startswith("mock reasoning")
    assert trace.calls == 1 and backend.calls[-1][0] == "doc-7:c1"
    assert backend.calls[0][0].startswith("dspy-")
    for body in bodies(mock):
        assert {k: v for k, v in body.items() if k != "messages"} == {
            "model": "mock-model",
            "temperature": 0.25,
            "max_tokens": 64,
            "top_p": 0.5,
        }
    entry = lm.history[-1]
    assert entry["messages"] == bodies(mock)[-1]["messages"]
    assert entry["usage"]["prompt_tokens"] > 0 and entry["usage"]["completion_tokens"] > 0
    assert entry["response_model"] == "mock-model" and len(lm.history) == 2


def test_per_call_kwargs_extra_body_messages_and_callbacks(
    backend: Recording, mock: MockServerThread
) -> None:
    events: list[str] = []

    class Spy(dspy.utils.callback.BaseCallback):  # type: ignore[misc]
        def on_lm_start(self, call_id: str, instance: Any, inputs: dict[str, Any]) -> None:
            events.append("start")

        def on_lm_end(self, call_id: str, outputs: Any, exception: Any = None) -> None:
            events.append(f"end:{exception is None}")

    lm = MinimaLlmDSPyLM(
        backend,
        max_tokens=64,
        stop=["###"],
        extra_body={"repetition_penalty": 1.1},
        callbacks=[Spy()],
    )
    with dspy.context(lm=lm):
        dspy.Predict(Judge)(query="q", passage="p", config={"temperature": 0.7, "seed": 5})
    wire = bodies(mock)[-1]
    assert wire["temperature"] == 0.7 and wire["seed"] == 5 and wire["max_tokens"] == 64
    assert wire["stop"] == ["###"] and wire["repetition_penalty"] == 1.1
    assert events == ["start", "end:True"]
    messages = [
        {"role": "system", "content": "be brief"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is this?"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        },
    ]
    with warnings.catch_warnings():  # DSPy 3.4 deprecates lm(messages=...) for users
        warnings.simplefilter("ignore", DeprecationWarning)
        assert lm(messages=messages) == ["echo: what is this?"]
    assert bodies(mock)[-1]["messages"] == messages


def test_asyncio_acall_and_force_refresh(backend: Recording, mock: MockServerThread) -> None:
    lm = MinimaLlmDSPyLM(backend, temperature=0.0)

    async def main() -> list[Any]:
        with dspy.context(lm=lm):
            first = await dspy.Predict(Judge).acall(query="a1", passage="p")
            token = set_force_refresh(True)
            try:
                second = await dspy.ChainOfThought(Judge).acall(query="a2", passage="p")
            finally:
                reset_force_refresh(token)
        return [first, second]

    first, second = asyncio.run(main())
    assert first.grade in range(4) and second.reasoning
    assert [force for _, force, _ in backend.calls] == [False, True]
    assert len(mock.requests) == 2


def test_sync_call_inside_a_running_asyncio_loop_is_served(
    backend: Recording, mock: MockServerThread
) -> None:
    """A notebook cell calling ``predictor(...)`` under asyncio: the background trio
    thread serves the request while the loop's thread waits, as with DSPy's own LM;
    the caller's context (force_refresh, request tags) still applies."""
    lm = MinimaLlmDSPyLM(backend)

    async def main() -> tuple[Any, Any, CallTrace]:
        with dspy.context(lm=lm):
            first = dspy.Predict(Judge)(query="s1", passage="p")
            token = set_force_refresh(True)
            try:
                with request_tag("cell-3") as trace:
                    second = dspy.ChainOfThought(Judge)(query="s2", passage="p")
            finally:
                reset_force_refresh(token)
        return first, second, trace

    first, second, trace = asyncio.run(main())
    assert first.grade in range(4) and second.reasoning.startswith("mock reasoning")
    assert [(rid.split(":")[0], force) for rid, force, _ in backend.calls] == [
        (backend.calls[0][0], False),
        ("cell-3", True),
    ]
    assert trace.calls == 1 and len(mock.requests) == 2
    bridge = _bridge.current_thread_if_running()
    assert bridge is not None
    assert {token for _, _, token in backend.calls} == {bridge.token}


def test_sync_call_needs_a_backend_the_runtime_can_serve(mock: MockServerThread) -> None:
    class AsyncioOnly:  # a user's own backend: async generate only
        async def generate(self, req: MinimaLlmRequest, *, force_refresh: bool = False) -> Any:
            raise AssertionError("not called")

    lm = MinimaLlmDSPyLM(AsyncioOnly(), model="m")

    async def main() -> None:
        with dspy.context(lm=lm), pytest.raises(Exception, match=r"predictor\.acall") as info:
            dspy.Predict(Judge)(query="x", passage="p")
        assert isinstance(info.value, UsageError) or isinstance(info.value.__cause__, UsageError)

    asyncio.run(main())
    assert len(mock.requests) == 0


async def test_trio_runs_dspy_in_a_thread_that_re_enters_the_run(
    backend: Recording, mock: MockServerThread
) -> None:
    lm = MinimaLlmDSPyLM(backend)
    here = trio.lowlevel.current_trio_token()
    predictor = dspy.ChainOfThought(Judge)
    with dspy.context(lm=lm):
        first = await acall_program(predictor, query="t1", passage="p")
        second = await trio.to_thread.run_sync(lambda: predictor(query="t2", passage="p"))
    assert first.grade in range(4) and second.grade in range(4)
    assert [token for _, _, token in backend.calls] == [here, here]
    assert len(mock.requests) == 2
    await backend.aclose()


async def test_sync_call_inside_trio_is_served_by_the_bridge_thread(
    backend: Recording, mock: MockServerThread
) -> None:
    """A synchronous call blocks this trio run, so this run cannot serve it: the
    background trio thread does, with its own session of the same backend."""
    lm = MinimaLlmDSPyLM(backend)
    here = trio.lowlevel.current_trio_token()
    with dspy.context(lm=lm), request_tag("trio-sync") as trace:
        answer = dspy.ChainOfThought(Judge)(query="t0", passage="p")
    assert answer.grade in range(4) and answer.reasoning.startswith("mock reasoning")
    assert trace.calls == 1 and backend.calls[0][0] == "trio-sync:c1"
    (token,) = {token for _, _, token in backend.calls}
    assert token is not None and token != here
    assert len(mock.requests) == 1
    await backend.aclose()


async def test_trio_cancellation_reaches_the_request_in_flight(
    backend: Recording, mock: MockServerThread
) -> None:
    lm = MinimaLlmDSPyLM(backend)
    # The server would answer after 30 s; the thread must end as soon as the waiting
    # task is cancelled (to_thread waits for its thread, so a missed cancel hangs here).
    with trio.fail_after(5), dspy.context(lm=lm), trio.move_on_after(0.3) as scope:
        await acall_program(dspy.Predict(Judge), query="#mock:latency=30", passage="p")
    assert scope.cancelled_caught
    assert len(backend.calls) == 1
    await backend.aclose()


def test_failed_request_raises_dspy_lm_error_and_dspy_does_not_retry(
    backend: Recording, mock: MockServerThread
) -> None:
    lm = MinimaLlmDSPyLM(backend)
    with dspy.context(lm=lm), pytest.raises(REQUEST_ERRORS) as info:
        dspy.Predict(Judge)(query="#mock:fault=500*99", passage="p")
    failure = failure_of(info.value)
    assert failure is not None and failure.status == 500
    assert failure.request_id.startswith("dspy-") and failure.attempts == 6
    # minimallm's own 6 attempts, no DSPy retries on top, no JSONAdapter fallback;
    # DSPy < 3.3 (no LMError) falls back to JSONAdapter on any error: a second chain.
    chains = 1 if hasattr(dspy.utils.exceptions, "LMError") else 2
    assert len(mock.requests) == 6 * chains


def test_dspy_cache_and_retries_cannot_be_turned_on(backend: Recording) -> None:
    with pytest.raises(TypeError, match="cache"):
        MinimaLlmDSPyLM(backend, cache=True)
    with pytest.raises(TypeError, match="num_retries"):
        MinimaLlmDSPyLM(backend).copy(num_retries=3)
    lm = MinimaLlmDSPyLM(backend, temperature=0.1)
    assert lm.copy(temperature=0.5).kwargs["temperature"] == 0.5
    twin = copy.deepcopy(lm)  # DSPy deep-copies programs; the backend is shared
    assert twin.backend is backend and twin.kwargs == lm.kwargs and twin.kwargs is not lm.kwargs


# -- run_dspy_batch ------------------------------------------------------------------------


def annotations(n: int, *special: str) -> list[Annotation]:
    objs = [Annotation(query=f"q{i}", passage=f"p{i}") for i in range(n)]
    return objs + [Annotation(query=q, passage="px") for q in special]


def test_run_dspy_batch_retries_parse_failures_with_exact_call_counts(
    backend: Recording, mock: MockServerThread
) -> None:
    objs = annotations(4, "flaky #dspy:unparseable=2", "broken #dspy:unparseable=99")

    async def main() -> DSPyBatchError:
        with pytest.raises(DSPyBatchError) as info:
            await run_dspy_batch(Judge, objs, fill, backend)
        return info.value

    error = asyncio.run(main())
    calls = queries(mock)
    assert calls["flaky #dspy:unparseable=2"] == 3  # attempt 1: chat + JSON; attempt 2: chat
    assert calls["broken #dspy:unparseable=99"] == 6  # 3 attempts x (chat + JSON)
    assert [calls[f"q{i}"] for i in range(4)] == [1, 1, 1, 1]
    flaky = [(rid, force) for rid, force, _ in backend.calls if rid.startswith("Judge:4:")]
    assert sorted(flaky) == [
        ("Judge:4:a1:c1", False),
        ("Judge:4:a1:c2", False),
        ("Judge:4:a2:c1", True),
    ]
    assert not get_force_refresh()
    assert [i for i, _ in error.failures] == [5] and "item 5 [Judge:5]" in str(error)
    assert error.failures[0][1].error_type == "ParseError"
    assert error.results[4] is objs[4] and objs[4].grade in range(4) and objs[4].reasoning
    assert all(obj.grade is not None for obj in objs[:5])
    assert dspy.settings.lm is None and dspy.settings.adapter is None  # nothing global


async def test_run_dspy_batch_under_trio_with_configurable_attempts(
    backend: Recording, mock: MockServerThread
) -> None:
    objs = annotations(6, "broken #dspy:unparseable=99")
    with pytest.raises(DSPyBatchError):
        await run_dspy_batch(Judge, objs, fill, backend, max_parse_attempts=2)
    assert queries(mock)["broken #dspy:unparseable=99"] == 4
    broken = sorted((rid, force) for rid, force, _ in backend.calls if rid.startswith("Judge:6:"))
    assert [force for _, force in broken] == [False, False, True, True]  # a1 x2, a2 x2
    assert all(obj.grade in range(4) for obj in objs[:6])
    here = trio.lowlevel.current_trio_token()
    assert {token for _, _, token in backend.calls} == {here}
    await backend.aclose()


def test_converter_errors_retry_and_programming_errors_raise(
    backend: Recording, mock: MockServerThread
) -> None:
    seen: list[int] = []

    def picky(prediction: Any, obj: Annotation) -> None:
        seen.append(1)
        if len(seen) == 1:
            raise ValueError("grade out of range")
        obj.grade = int(prediction.grade)

    def buggy(prediction: Any, obj: Annotation) -> None:
        obj.grade = prediction.grade + "1"  # TypeError: a bug, not a bad answer

    objs = annotations(1)
    asyncio.run(run_dspy_batch(Judge, objs, picky, backend, predictor_class=dspy.Predict))
    assert objs[0].grade is not None and len(mock.requests) == 2
    assert [force for _, force, _ in backend.calls] == [False, True]
    with pytest.raises(TypeError):
        asyncio.run(run_dspy_batch(Judge, annotations(1), buggy, backend))


def test_run_dspy_batch_refuses_objects_without_the_input_fields(
    backend: Recording, mock: MockServerThread
) -> None:
    class Wrong(BaseModel):
        query: str

    with pytest.raises(TypeError, match=r"\['passage'\]"):
        asyncio.run(run_dspy_batch(Judge, [Wrong(query="q")], fill, backend))
    assert mock.requests == []


def test_run_dspy_batch_without_a_backend_uses_the_environment(
    mock: MockServerThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in {
        "OPENAI_BASE_URL": mock.base_url,
        "OPENAI_MODEL": "mock-model",
        "RPM": "0",
        "BATCH_HEARTBEAT_S": "0",
    }.items():
        monkeypatch.setenv(name, value)
    objs = annotations(3)
    assert asyncio.run(run_dspy_batch(Judge, objs, fill)) == objs
    assert len(mock.requests) == 3 and all(o.grade is not None for o in objs)


def test_the_cache_then_holds_the_good_answer(mock: MockServerThread, tmp_path: Any) -> None:
    real = OpenAIMinimaLlm(make_config(mock, cache_dir=str(tmp_path)))
    objs = annotations(0, "flaky #dspy:unparseable=2")
    asyncio.run(run_dspy_batch(Judge, objs, fill, real))
    assert len(mock.requests) == 3
    again = annotations(0, "flaky #dspy:unparseable=2")
    snapshots: list[Any] = []
    asyncio.run(run_dspy_batch(Judge, again, fill, real, progress=snapshots.append))
    assert len(mock.requests) == 3  # served from the cache: the refreshed, good answer
    assert snapshots[-1].cached == 1  # the batch counted the item as cached
    assert again[0].grade == objs[0].grade
    real.close_sync()


def test_import_minimallm_never_imports_dspy() -> None:
    code = (
        "import sys; sys.modules['dspy'] = None\n"
        "import minimallm\n"
        "assert 'minimallm.dspy' not in sys.modules\n"
        "try:\n"
        "    import minimallm.dspy\n"
        "except ImportError as e:\n"
        "    assert \"pip install 'minimallm[dspy]'\" in str(e), e\n"
        "else:\n"
        "    raise SystemExit('imported without dspy')\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=60)
