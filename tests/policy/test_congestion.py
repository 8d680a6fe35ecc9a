"""Sporadic vs sustained overload, and steps of congestion (OverloadSignal)."""

from __future__ import annotations

import random

import pytest

from minimallm._policy import OverloadSignal


def test_one_burst_of_simultaneous_overloads_is_one_step() -> None:
    sig = OverloadSignal()
    steps = [sig.observe(0.01 + i * 1e-4, 0.0, True) for i in range(64)]
    assert steps.count(True) == 1
    assert steps.index(True) == 7  # the eighth overload in a row
    assert sig.depth == 1
    # an attempt sent after the step began, refused too: the overload persisted
    assert sig.observe(0.5, 0.1, True)
    assert sig.depth == 2


def test_sporadic_overloads_never_make_a_step() -> None:
    rng = random.Random(7)
    sig = OverloadSignal()
    t = 0.0
    for _ in range(100_000):
        t += 0.001
        assert not sig.observe(t, t - 0.1, rng.random() < 0.05)
    assert sig.steps == 0 and sig.depth == 0
    assert 0.0 < sig.share < 0.25


def test_calm_ends_the_episode() -> None:
    sig = OverloadSignal()
    for _ in range(10):
        sig.observe(1.0, 0.0, True)
    assert sig.depth == 1
    n = 0
    while sig.depth:
        sig.observe(2.0 + n, 1.5 + n, False)
        n += 1
    assert sig.share < 0.05 and n == 68  # 0.145 * (63/64)**68 < 0.05


def test_bad_parameters() -> None:
    with pytest.raises(ValueError):
        OverloadSignal(calm=0.3, threshold=0.25)
