"""LM calls counted from any thread, and shown in the progress lines."""

from __future__ import annotations

import json
import threading

from minimallm._lazy_json import LazyJson
from minimallm._progress import ProgressTally, format_summary, format_tick
from minimallm._progress.calls import CallCounter
from minimallm._types import MinimaLlmFailure, MinimaLlmResponse

BODY = json.dumps(
    {
        "usage": {
            "prompt_tokens": 7,
            "completion_tokens": 3,
            "prompt_tokens_details": {"cached_tokens": 4},
        }
    }
)


def test_counts_from_many_threads_add_up() -> None:
    counter = CallCounter()
    answer = MinimaLlmResponse("r", "x", LazyJson(BODY), False, 7, 3)
    hit = MinimaLlmResponse("r", "x", None, True)
    failure = MinimaLlmFailure("r", "HTTPError", "no", 1)

    def work() -> None:
        for result in [answer, hit, failure] * 100:
            counter.start()
            counter.end(result)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c = counter.counts()
    assert (c.started, c.ended, c.cached, c.failed, c.running) == (2400, 2400, 800, 800, 0)
    assert (c.prompt_tokens, c.completion_tokens, c.cached_tokens) == (5600, 2400, 3200)
    assert c.tokens_reported


def test_a_tick_shows_the_calls_under_way_before_any_item_is_done() -> None:
    counter = CallCounter()
    for _ in range(5):
        counter.start()
    counter.end(MinimaLlmResponse("r", "x", None, True))
    tally = ProgressTally(50, 0.0)
    snap = tally.snapshot("tick", 180.0, calls=counter.counts())
    assert (snap.done, snap.calls, snap.calls_running, snap.calls_cached) == (0, 1, 4, 1)
    assert format_tick(snap) == [
        "[minimallm] 0:03:00 0/50 0.0% | 0.0/s | ETA ? | LM calls 1 (4 running, 1 cached)"
    ]


def test_the_summary_names_the_calls_made_not_those_cut_off() -> None:
    counter = CallCounter()
    for _ in range(14):
        counter.start()
    for _ in range(12):
        counter.end(MinimaLlmFailure("r", "ParseError", "no", 2))
    tally = ProgressTally(10, 0.0)
    for _ in range(3):
        tally.item_finished(0.0, 0.3, "failed", attempts=2)
    [first, *_] = format_summary(tally.snapshot("done", 0.4, calls=counter.counts()))
    assert first == (
        "[minimallm] finished 3/10 in 0:00:00 | ok 0 (cached 0) | failed 3 | retries 3"
        " | LM calls 12"
    )
