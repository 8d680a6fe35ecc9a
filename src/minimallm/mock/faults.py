"""Fault vocabulary and the pure decisions of the mock server (sans-IO, no clock).

Two ways to ask for a fault:

* **Deterministic, per prompt**: directives inside the content of the last message.
  ``#mock:fault=500*2`` makes the first two requests whose content is exactly this
  string answer 500, later ones succeed. ``#mock:fault=503,429,ok`` picks the i-th
  entry for the i-th attempt of that content, then succeeds. ``#mock:retry_after=1.5``
  sets the ``Retry-After`` header (seconds) of a 429 (or of any fault status it goes
  with); ``#mock:latency=2.0`` replaces the server's latency and jitter for this prompt
  (seconds); ``#mock:shape=NAME`` answers every successful attempt of this prompt in
  one of the :data:`SHAPES` of today's endpoints (see ``bodies.py``).
* **Random**: ``fault_rates`` maps a kind to a probability per request, drawn from a
  seeded ``random.Random``. Requests that carry a ``fault`` directive never get a random
  fault, so directive-driven tests stay deterministic.

Kinds: an HTTP status number (100..599, e.g. ``"500"``), or one of
``reset`` (abrupt close, RST), ``hang`` (never answer), ``malformed`` (200, non-JSON body),
``cut`` (200, body shorter than its Content-Length), ``null`` (200, ``content: null``),
``nochoices`` (200 JSON without ``choices``), and ``ok`` (normal answer).
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "NAMED_KINDS",
    "OK",
    "SHAPES",
    "DirectiveError",
    "Directives",
    "FaultRoller",
    "FaultSequences",
    "parse_directives",
    "validate_kind",
]

OK = "ok"
NAMED_KINDS = frozenset({OK, "reset", "hang", "malformed", "cut", "null", "nochoices"})
"""Every fault kind that is not an HTTP status number."""

SHAPES = frozenset(
    {
        "reasoning",
        "reasoning_content",
        "reasoning_only",
        "tool_call",
        "refusal",
        "length",
        "content_filter",
        "quota",
        "context_length",
    }
)
"""Answer shapes ``#mock:shape=`` asks for: ``reasoning`` / ``reasoning_content`` (the
text plus reasoning under that name, as vLLM / llama.cpp send it), ``reasoning_only``
(``content: null`` beside ``reasoning``), ``tool_call`` (``content: null``, one tool
call), ``refusal`` (``content: null``, a refusal), ``length`` (``content: null``,
reasoning, ``finish_reason: "length"``), ``content_filter`` (``content: null``,
``finish_reason: "content_filter"``), ``quota`` (429 ``insufficient_quota``),
``context_length`` (400 ``context_length_exceeded``)."""

_DIRECTIVE = re.compile(r"#mock:([A-Za-z_]+)=(\S*)")
_MAX_REPEAT = 1_000_000


class DirectiveError(ValueError):
    """A ``#mock:`` directive or a fault kind is malformed; the server answers 400."""


def validate_kind(kind: str) -> str:
    """Return ``kind`` normalised (lower case) or raise DirectiveError if unknown."""
    k = kind.strip().lower()
    if k in NAMED_KINDS:
        return k
    if k.isdigit() and 100 <= int(k) <= 599:
        return str(int(k))
    raise DirectiveError(
        f"unknown mock fault kind {kind!r}: use an HTTP status (100-599) or one of "
        + ", ".join(sorted(NAMED_KINDS))
    )


def _parse_sequence(spec: str) -> tuple[str, ...]:
    kinds: list[str] = []
    for item in spec.split(","):
        name, star, count = item.partition("*")
        kind = validate_kind(name)
        n = 1
        if star:
            if not count.isdigit() or not 0 < int(count) <= _MAX_REPEAT:
                raise DirectiveError(f"bad repeat count in mock fault {item!r}")
            n = int(count)
        kinds.extend([kind] * n)
    return tuple(kinds)


def _parse_seconds(name: str, value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise DirectiveError(f"#mock:{name}={value!r} is not a number of seconds") from None
    if not 0.0 <= seconds < float("inf"):
        raise DirectiveError(f"#mock:{name}={value!r} must be finite and >= 0 seconds")
    return seconds


@dataclass(frozen=True, slots=True)
class Directives:
    """What the ``#mock:`` directives of one prompt ask for.

    ``faults`` is the per-attempt sequence (empty: no fault directive);
    ``retry_after_s`` and ``latency_s`` are seconds, None when not given; ``shape``:
    one of :data:`SHAPES`, None for the usual answer.
    """

    faults: tuple[str, ...] = ()
    retry_after_s: float | None = None
    latency_s: float | None = None
    shape: str | None = None


NO_DIRECTIVES = Directives()


def parse_directives(content: str) -> Directives:
    """Read every ``#mock:name=value`` directive in ``content``.

    Raises DirectiveError for an unknown directive name or a bad value, so a typo in a
    test prompt fails loudly instead of silently succeeding.
    """
    if "#mock:" not in content:
        return NO_DIRECTIVES
    faults: tuple[str, ...] = ()
    retry_after: float | None = None
    latency: float | None = None
    shape: str | None = None
    for match in _DIRECTIVE.finditer(content):
        name, value = match.group(1).lower(), match.group(2)
        if name == "fault":
            faults = _parse_sequence(value)
        elif name == "retry_after":
            retry_after = _parse_seconds(name, value)
        elif name == "latency":
            latency = _parse_seconds(name, value)
        elif name == "shape":
            shape = value.strip().lower()
            if shape not in SHAPES:
                raise DirectiveError(
                    f"unknown mock shape {value!r}: use one of {', '.join(sorted(SHAPES))}"
                )
        else:
            raise DirectiveError(
                f"unknown mock directive #mock:{name}= (known: fault, retry_after, latency, shape)"
            )
    return Directives(faults, retry_after, latency, shape)


class FaultSequences:
    """Per-content attempt counters for deterministic fault sequences.

    Only contents that carry a fault directive are counted, so a benchmark with a
    million distinct prompts does not grow this table.
    """

    __slots__ = ("_attempts",)

    def __init__(self) -> None:
        self._attempts: dict[str, int] = {}

    def next_kind(self, content: str, faults: tuple[str, ...]) -> str:
        """Count one attempt of ``content`` and return the kind this attempt gets."""
        i = self._attempts.get(content, 0)
        self._attempts[content] = i + 1
        return faults[i] if i < len(faults) else OK

    def attempts(self, content: str) -> int:
        """How many attempts of ``content`` were counted since the last clear."""
        return self._attempts.get(content, 0)

    def clear(self) -> None:
        """Forget every counter (a later attempt starts the sequence again)."""
        self._attempts.clear()

    def __repr__(self) -> str:
        return f"<FaultSequences contents={len(self._attempts)}>"


class FaultRoller:
    """Random faults: one uniform draw per request against cumulative probabilities."""

    __slots__ = ("_table", "total")

    def __init__(self, rates: Mapping[str, float]) -> None:
        table: list[tuple[float, str]] = []
        total = 0.0
        for kind, p in sorted(rates.items()):
            k = validate_kind(kind)
            if not 0.0 <= p <= 1.0:
                raise DirectiveError(f"fault rate {kind}={p} must be within [0, 1]")
            if p > 0.0:
                total += p
                table.append((total, k))
        if total > 1.0 + 1e-9:
            raise DirectiveError(f"fault rates add up to {total:g}, more than 1")
        self._table = tuple(table)
        self.total = total

    def roll(self, rng: random.Random) -> str:
        """Return the kind for one request (``ok`` most of the time)."""
        if not self._table:
            return OK
        x = rng.random()
        for bound, kind in self._table:
            if x < bound:
                return kind
        return OK

    def __repr__(self) -> str:
        return f"<FaultRoller total={self.total:g} kinds={[k for _, k in self._table]}>"
