"""The shared pause's arithmetic (CooldownState), with exact numbers."""

from __future__ import annotations

import math

import pytest

from minimallm._policy import CooldownState


def _cooldown(**overrides: float) -> CooldownState:
    params = {"floor_s": 0.0, "cap_s": 30.0, "halflife_s": 20.0, "initial_s": 0.5}
    params.update(overrides)
    return CooldownState(**params)


def test_starts_open_on_any_clock() -> None:
    cd = _cooldown()
    assert cd.deadline() == -math.inf
    assert cd.remaining(0.0) == 0.0
    assert cd.remaining(-1e9) == 0.0
    assert cd.level(123.0) == 0.0


def test_persisting_overload_doubles_the_pause_up_to_the_cap() -> None:
    cd = _cooldown()
    deadlines = [cd.pause(100.0, persisted=True) for _ in range(9)]
    assert deadlines == [100.5, 101.0, 102.0, 104.0, 108.0, 116.0, 130.0, 130.0, 130.0]
    assert cd.level(100.0) == 30.0
    assert cd.remaining(129.0) == 1.0
    assert cd.remaining(130.0) == 0.0


def test_a_pause_that_did_not_persist_does_not_grow() -> None:
    cd = _cooldown()
    assert [cd.pause(10.0) for _ in range(3)] == [10.5, 10.5, 10.5]
    assert cd.level(10.0) == 0.5


def test_level_decays_with_half_life() -> None:
    cd = _cooldown()
    for _ in range(4):
        cd.pause(0.0, persisted=True)
    assert cd.level(0.0) == 4.0
    assert cd.level(20.0) == 2.0
    assert cd.level(40.0) == 1.0
    assert cd.remaining(4.0) == 0.0  # the gate opened long before the level decayed
    assert cd.pause(40.0, persisted=True) == 42.0  # doubles the decayed 1.0, not 4.0
    assert cd.pause(200.0, persisted=False) == 200.5  # decayed below initial: initial


def test_retry_after_sets_the_pause_capped() -> None:
    cd = _cooldown()
    assert cd.pause(10.0, retry_after_s=7.0) == 17.0
    assert cd.level(10.0) == 7.0  # the server's word sets the level
    assert _cooldown().pause(10.0, retry_after_s=3600.0) == 40.0  # capped at cap_s
    assert _cooldown().pause(10.0, retry_after_s=0.0) == 10.0  # floor 0: no pause
    assert _cooldown(floor_s=2.0).pause(10.0, retry_after_s=0.5) == 12.0  # at least the floor


def test_floor_and_cap() -> None:
    cd = _cooldown(floor_s=3.0, cap_s=5.0)
    assert cd.pause(0.0) == 3.0
    assert cd.pause(0.0, persisted=True) == 5.0  # 6 capped to 5
    assert _cooldown(floor_s=10.0, cap_s=5.0, initial_s=8.0).pause(0.0) == 5.0  # cap wins


def test_deadline_never_moves_back() -> None:
    cd = _cooldown()
    cd.pause(0.0, retry_after_s=30.0)
    assert cd.pause(25.0, retry_after_s=1.0) == 30.0


def test_zero_halflife_forgets_at_once() -> None:
    cd = _cooldown(halflife_s=0.0)
    cd.pause(5.0, persisted=True)
    assert cd.level(5.0) == 0.5
    assert cd.pause(5.0, persisted=True) == 6.0
    assert cd.level(5.000001) == 0.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"floor_s": -1.0},
        {"cap_s": math.nan},
        {"cap_s": math.inf},
        {"halflife_s": -1.0},
        {"initial_s": math.inf},
    ],
)
def test_rejects_bad_parameters(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        _cooldown(**kwargs)


def test_repr_shows_live_state() -> None:
    cd = _cooldown()
    cd.pause(2.0)
    text = repr(cd)
    assert "level=0.500s" in text and "deadline=2.500" in text and "cap_s=30.0" in text
