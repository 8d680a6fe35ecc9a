"""``_frozen.fast_init``: the faster ``__init__`` of a frozen, slotted dataclass behaves
as the dataclass's own (signature, defaults, errors, frozen, replace, pickle), and a
class it cannot reproduce exactly keeps its own."""

from __future__ import annotations

import dataclasses
import inspect
import pickle
from typing import ClassVar

import pytest

from minimallm import MinimaLlmFailure, MinimaLlmRequest, MinimaLlmResponse
from minimallm._frozen import fast_init


@dataclasses.dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "x"
    c: tuple[int, ...] = ()


@fast_init
@dataclasses.dataclass(frozen=True, slots=True)
class Fast:
    a: int
    b: str = "x"
    c: tuple[int, ...] = ()


def test_the_same_instances_as_the_dataclass_init() -> None:
    for args, kwargs in [((1,), {}), ((1, "y"), {}), ((1,), {"c": (2,)}), ((), {"a": 3})]:
        fast, plain = Fast(*args, **kwargs), Plain(*args, **kwargs)
        assert dataclasses.astuple(fast) == dataclasses.astuple(plain)
    assert repr(Fast(1)) == "Fast(a=1, b='x', c=())"
    assert Fast(1) == Fast(1) and hash(Fast(1)) == hash(Fast(1))


def test_the_same_signature_and_errors() -> None:
    assert str(inspect.signature(Fast)) == str(inspect.signature(Plain))
    assert Fast.__init__.__code__.co_filename == "<string>"  # it is the fast one
    for args, kwargs in [((), {}), ((1, "y", (), 4), {}), ((1,), {"d": 2}), ((1,), {"a": 2})]:
        with pytest.raises(TypeError) as fast_error:
            Fast(*args, **kwargs)
        with pytest.raises(TypeError) as plain_error:
            Plain(*args, **kwargs)
        assert str(fast_error.value).replace("Fast", "Plain") == str(plain_error.value)


def test_still_frozen_replaceable_and_picklable() -> None:
    fast = Fast(1)
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.a = 2  # type: ignore[misc]
    assert dataclasses.replace(fast, b="z") == Fast(1, "z")
    assert pickle.loads(pickle.dumps(fast)) == fast


def test_classes_it_cannot_reproduce_keep_their_own_init() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Factory:
        a: list[int] = dataclasses.field(default_factory=list)

    @dataclasses.dataclass(frozen=True, slots=True)
    class PostInit:
        a: int

        def __post_init__(self) -> None:
            pass

    @dataclasses.dataclass(frozen=True, slots=True)
    class WithClassVar:
        a: int
        k: ClassVar[int] = 1

    @dataclasses.dataclass(frozen=True, slots=True)
    class KwOnly:
        a: int = dataclasses.field(kw_only=True)

    @dataclasses.dataclass(frozen=True)
    class NoSlots:
        a: int

    @dataclasses.dataclass(slots=True)
    class NotFrozen:
        a: int

    for cls in (Factory, PostInit, WithClassVar, KwOnly, NoSlots, NotFrozen):
        own = cls.__init__
        assert fast_init(cls).__init__ is own, cls


@pytest.mark.parametrize("cls", [MinimaLlmRequest, MinimaLlmResponse, MinimaLlmFailure])
def test_the_types_a_batch_builds_per_item_use_it(cls: type) -> None:
    assert cls.__init__.__code__.co_filename == "<string>"
