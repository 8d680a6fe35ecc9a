"""Library misuse of the callable batch entries: a TypeError naming the argument and
what it takes, before anything runs (issue 19)."""

from __future__ import annotations

from typing import Any

import pytest

from minimallm import BatchConfig, run_batched_callable, stream_batched_callable


async def double(x: int) -> int:
    return 2 * x


CFG = BatchConfig(num_workers=2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"items": None},
            r"run_batched_callable\(items=\.\.\.\) takes an iterable of items .*got NoneType",
        ),
        ({"items": "abc"}, r"takes an iterable of items .*got str"),
        ({"items": 5}, r"takes an iterable of items .*got int"),
        (
            {"batch_config": {"num_workers": 2}},
            r"run_batched_callable\(batch_config=\.\.\.\) takes a BatchConfig or None, got dict "
            r"\(build one: BatchConfig\(\*\*settings\)",
        ),
        (
            {"async_fn": 3},
            r"run_batched_callable\(async_fn=\.\.\.\) takes an async function \(async def\), "
            r"got int",
        ),
        ({"async_fn": abs}, r"takes an async function \(async def\), got abs, which is not one"),
    ],
)
async def test_bad_arguments_are_named(kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"items": [1, 2], "async_fn": double, "batch_config": CFG, **kwargs}
    with pytest.raises(TypeError, match=message):
        await run_batched_callable(**args)


async def test_a_synchronous_function_is_named_not_awaited() -> None:
    def sync_double(x: int) -> int:
        return 2 * x

    with pytest.raises(
        TypeError,
        match=r"async_fn=\.\.\.\) takes an async function \(async def\); "
        r".*sync_double returned int, not an awaitable",
    ):
        await run_batched_callable([1, 2], sync_double, CFG)  # type: ignore[arg-type]


async def test_a_lambda_returning_a_coroutine_still_works() -> None:
    assert await run_batched_callable([1, 2], lambda x: double(x), CFG) == [2, 4]


def test_the_stream_entry_checks_too() -> None:
    with pytest.raises(TypeError, match=r"stream_batched_callable\(items=\.\.\.\)"):
        stream_batched_callable(None, double, CFG)  # type: ignore[arg-type]
