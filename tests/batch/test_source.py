"""ItemSource: a batch's input taken one item at a time, lazily, within the window, or
from the cache reader's misses."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import trio
import trio.testing

from minimallm._batch.source import ItemSource


def _stops() -> tuple[list[BaseException], Callable[[BaseException], None]]:
    told: list[BaseException] = []
    return told, told.append


def test_take_reads_the_input_lazily_and_ends_once() -> None:
    read: list[int] = []

    def items() -> Iterator[str]:
        for i in range(3):
            read.append(i)
            yield f"q{i}"

    told, stop = _stops()
    source = ItemSource(items(), None)
    assert read == []
    assert source.take(stop) == (0, "q0")
    assert read == [0]
    assert [source.take(stop), source.take(stop)] == [(1, "q1"), (2, "q2")]
    assert source.take(stop) is None
    assert source.exhausted and told == []
    assert source.take(stop) is None
    assert read == [0, 1, 2]


def test_an_input_that_raises_ends_the_source_and_tells_the_batch() -> None:
    def items() -> Iterator[str]:
        yield "q0"
        raise ValueError("bad row")

    told, stop = _stops()
    source = ItemSource(items(), None)
    assert source.take(stop) == (0, "q0")
    assert source.take(stop) is None
    assert source.exhausted
    assert [type(e) for e in told] == [ValueError]
    assert "raised by the batch's input" in told[0].__notes__[0]


async def test_the_window_bounds_how_far_the_input_is_read_ahead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    told, stop = _stops()
    window = trio.Semaphore(2)
    source = ItemSource(range(5), window)
    assert source.ready(stop) == (0, 0)
    assert source.ready(stop) == (1, 1)
    assert source.ready(stop) is False  # full: none yet
    with trio.move_on_after(1) as waited:
        await source.next(stop)
    assert waited.cancelled_caught  # it waits for room
    window.release()  # the consumer took one
    assert await source.wait(stop) == (2, 2)
    window.release()
    window.release()
    assert [source.ready(stop), source.ready(stop)] == [(3, 3), (4, 4)]
    window.release()
    assert source.ready(stop) is None
    assert window.value == 1  # the end took no room
    assert told == []


async def test_with_the_cache_reader_the_items_are_its_misses(
    autojump_clock: trio.testing.MockClock,
) -> None:
    told, stop = _stops()
    source = ItemSource(range(100), None)
    send, source.misses = trio.open_memory_channel[tuple[int, object]](4)
    assert source.ready(stop) is False
    send.send_nowait((7, "miss"))
    assert source.ready(stop) == (7, "miss")
    async with trio.open_nursery() as nursery:
        nursery.start_soon(send.send, (9, "later"))
        assert await source.wait(stop) == (9, "later")
    await send.aclose()
    assert source.ready(stop) is None
    assert source.exhausted
    assert await source.wait(stop) is None
    assert told == []


@pytest.mark.parametrize("window", [None, 3])
async def test_next_takes_every_item_once_in_order(window: int | None) -> None:
    told, stop = _stops()
    source = ItemSource(iter("abcde"), None if window is None else trio.Semaphore(window))
    got = []
    while (taken := await source.next(stop)) is not None:
        got.append(taken)
        if window is not None and len(got) >= window:
            source._window.release()  # type: ignore[union-attr]  # the consumer took one
    assert got == list(enumerate("abcde"))
    assert told == []
