"""``@fast_init``: a frozen, slotted dataclass built twice as fast.

A frozen dataclass's ``__init__`` sets each field with
``object.__setattr__(self, name, value)`` (a global lookup, an attribute lookup and a
name lookup on the type per field): ~2.2 µs for a 7-field request, several times what
the same class costs unfrozen. A batch builds a request and a response (or a failure)
per item, so :func:`fast_init` replaces that ``__init__`` with one that calls
each field's slot descriptor directly (~0.7 µs for the same request, measured with
``timeit``). Same signature, same defaults, same frozen instances (assignment still
raises ``FrozenInstanceError``); ``dataclasses.replace``, pickling, ``repr`` and
equality are the dataclass's own.

Only for what it can do exactly: a slotted, frozen dataclass whose fields all go to
``__init__`` with a plain default or none (no ``InitVar`` or ``ClassVar``), without
``__post_init__``; anything else is returned unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

__all__ = ["fast_init"]

C = TypeVar("C", bound=type)


def fast_init(cls: C) -> C:
    """Give the frozen, slotted dataclass ``cls`` a faster ``__init__`` (see the module
    docstring); returns ``cls``."""
    params = dataclasses.fields(cls)
    simple = (
        "__slots__" in cls.__dict__
        and cls.__dataclass_params__.frozen  # type: ignore[attr-defined]
        and len(cls.__dataclass_fields__) == len(params)  # type: ignore[attr-defined]
        and not hasattr(cls, "__post_init__")
        and all(
            f.init and not f.kw_only and f.default_factory is dataclasses.MISSING for f in params
        )
    )
    if not simple:
        return cls
    namespace: dict[str, Any] = {}
    args, body = [], []
    for f in params:
        if f.default is dataclasses.MISSING:
            args.append(f.name)
        else:
            namespace[f"_default_{f.name}"] = f.default
            args.append(f"{f.name}=_default_{f.name}")
        namespace[f"_set_{f.name}"] = cls.__dict__[f.name].__set__  # the slot descriptor
        body.append(f"    _set_{f.name}(self, {f.name})")
    source = f"def __init__(self, {', '.join(args)}):\n" + "\n".join(body or ["    pass"])
    exec(source, namespace)  # our own field names, as dataclasses does
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__
    init.__annotations__ = {**{f.name: f.type for f in params}, "return": None}
    init.__doc__ = cls.__dict__["__init__"].__doc__
    cls.__init__ = init  # type: ignore[misc]
    return cls
