"""A JSON object kept as text and decoded only when read.

Responses keep the server's body this way: a 100,000-request batch holds every result,
and a decoded body costs ~4x the memory of its text (measured 1,840 vs ~450 bytes per
answer); most users read ``.text``, not ``.raw``. The cache stores the text as is.

What a user reads is a plain ``dict``, never this object: :func:`decode_on_read`
turns a slotted attribute (``MinimaLlmResponse.raw``) into a property that decodes a
stored :class:`LazyJson` on first read and keeps the dict in its place. A lazy
*mapping* handed out instead would not do: ``json.dumps`` refuses a Mapping that is
not a dict, and a dict subclass with lazily filled storage is no better, because C
code (``json``'s encoder on an empty dict, ``orjson``, ``dict(x)`` fast paths) reads a
dict's storage directly, bypassing any overridden method.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["LazyJson", "decode_on_read", "stored"]


class LazyJson(Mapping[str, Any]):
    """A JSON object decoded on first access; pickles and compares as a plain dict.
    Text that is not a JSON object reads as an empty mapping."""

    __slots__ = ("_data", "_text")

    @property
    def text(self) -> str:
        """The JSON text as received."""
        return self._text

    def __init__(self, text: str) -> None:
        self._text = text
        self._data: dict[str, Any] | None = None

    def _decoded(self) -> dict[str, Any]:
        if self._data is None:
            try:
                value = json.loads(self._text)
            except (ValueError, RecursionError):
                value = None
            self._data = value if isinstance(value, dict) else {}
        return self._data

    def decoded(self) -> dict[str, Any]:
        """The object as a plain dict (decoded once)."""
        return self._decoded()

    def __getitem__(self, key: str) -> Any:
        return self._decoded()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._decoded())

    def __len__(self) -> int:
        return len(self._decoded())

    def __repr__(self) -> str:
        return repr(self._decoded())

    def __reduce__(self) -> tuple[Any, ...]:
        return (dict, (self._decoded(),))


def decode_on_read(cls: type, name: str) -> Any:
    """Make the slot ``name`` of the slotted class ``cls`` hand out a plain dict for a
    stored :class:`LazyJson`, decoding it on the first read and storing the dict in
    its place (later reads cost nothing). Writes (the constructor's, unpickling's) go
    to the slot unchanged. Returns the slot's own descriptor, for :func:`stored`.
    """
    slot = cls.__dict__[name]

    def read(self: Any) -> Any:
        value = slot.__get__(self, cls)
        if type(value) is LazyJson:
            value = value.decoded()
            slot.__set__(self, value)
        return value

    # the slot's own setter: no Python frame per construction (~0.15 µs saved)
    setattr(cls, name, property(read, slot.__set__, doc=f"``{name}``, a plain dict when read."))
    return slot


def stored(slot: Any, instance: Any) -> Any:
    """What the slot holds now (a :class:`LazyJson` not yet read stays one)."""
    return slot.__get__(instance, type(instance))
