"""A mock-server responder that answers DSPy prompts in DSPy's own output format.

DSPy's ChatAdapter lists the signature's fields in its system message::

    Your input fields are:
    1. `query` (str): the query
    Your output fields are:
    1. `reasoning` (str):
    2. `grade` (int): 0-3
    All interactions will be structured in the following way ...

and expects ``[[ ## field ## ]]`` sections ending with ``[[ ## completed ## ]]``. Its
JSON fallback (JSONAdapter) sends the same field list with "Outputs will be a JSON
object" and expects one JSON object. :class:`DSPyResponder` reads the output fields
(name and type) from the system message and answers in the format asked for, with
values derived deterministically from the item's inputs (an ``int`` field gets a
value in 0..3, a ``Literal`` one of its options, and so on), so a whole DSPy program
can run against the mock over real HTTP. This module does not import DSPy.

Directives, written anywhere in an input field's value (``#dspy:`` so the server's
own ``#mock:`` parser leaves them alone):

* ``#dspy:unparseable=K`` — the first K answers for this item (the same input values,
  whatever the adapter) carry no field markers and no JSON, so both adapters fail to
  parse them; later answers are normal. One DSPy parse failure costs two answers
  (ChatAdapter, then its JSONAdapter fallback).
* ``#dspy:<field>=<value>`` — answer ``<value>`` (one word) for output field
  ``<field>``.

Prompts that are not DSPy prompts get the ``fallback`` responder (echo by default).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from minimallm.mock.config import Responder, echo_responder

__all__ = [
    "UNPARSEABLE_TEXT",
    "DSPyPrompt",
    "DSPyResponder",
    "OutputField",
    "parse_dspy_prompt",
    "render_answer",
]

UNPARSEABLE_TEXT = "mock: this answer ignores the requested output format."
"""What an unparseable answer says: no ``[[ ## ]]`` markers, no JSON object."""

_OUTPUTS_HEADER = "Your output fields are:"
_INPUTS_HEADER = "Your input fields are:"
_JSON_MARKER = "Outputs will be a JSON object"
_INSTRUCTIONS = "\n\nRespond with "
_FIELD_LINE = re.compile(r"^\s*\d+\.\s+`(?P<name>\w+)`\s+\((?P<type>[^()]*)\)")
_SECTION = re.compile(r"\[\[ ## (\w+) ## \]\]\n")
_DIRECTIVE = re.compile(r"#dspy:(\w+)=(\S+)")
_LITERAL = re.compile(r"^Literal\[(.*)\]$")


@dataclass(frozen=True, slots=True)
class OutputField:
    """One output field of a DSPy signature: its name and type as DSPy prints it
    (``str``, ``int``, ``Literal['yes', 'no']``, ``Union[int, NoneType]`` ...)."""

    name: str
    type: str


@dataclass(frozen=True, slots=True)
class DSPyPrompt:
    """What the responder needs from one DSPy request.

    ``inputs`` are the input field values of the last user message (the item being
    asked about, after any few-shot demos); ``json_mode`` is True for JSONAdapter.
    """

    inputs: Mapping[str, str]
    outputs: tuple[OutputField, ...]
    json_mode: bool

    @property
    def key(self) -> str:
        """Identifies the item across adapters and retries: its input values."""
        return json.dumps(dict(self.inputs), sort_keys=True)


def _message_text(message: Mapping[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _field_list(system: str, header: str) -> list[OutputField]:
    start = system.find(header)
    if start < 0:
        return []
    fields: list[OutputField] = []
    for line in system[start + len(header) :].splitlines()[1:]:
        if line.startswith(("Your ", "All interactions")):
            break
        match = _FIELD_LINE.match(line)
        if match is not None:  # other lines continue a multi-line description
            fields.append(OutputField(match["name"], match["type"].strip()))
    return fields


def _sections(text: str, names: set[str]) -> dict[str, str]:
    """The ``[[ ## name ## ]]`` sections of ``text`` whose name is in ``names``."""
    found: dict[str, str] = {}
    matches = list(_SECTION.finditer(text))
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        if match[1] in names:
            found[match[1]] = text[match.end() : end].strip()
    return found


def parse_dspy_prompt(body: Mapping[str, Any]) -> DSPyPrompt | None:
    """Read a chat request body as a DSPy prompt; None when it is not one."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return None
    rows = [m for m in messages if isinstance(m, dict)]
    system = next((_message_text(m) for m in rows if m.get("role") == "system"), "")
    outputs = _field_list(system, _OUTPUTS_HEADER)
    if not outputs:
        return None
    input_names = {f.name for f in _field_list(system, _INPUTS_HEADER)}
    last_user = next((_message_text(m) for m in reversed(rows) if m.get("role") == "user"), "")
    # Both adapters end the user message with their output instructions.
    cut = last_user.rfind(_INSTRUCTIONS)
    if cut >= 0:
        last_user = last_user[:cut]
    return DSPyPrompt(
        inputs=_sections(last_user, input_names),
        outputs=tuple(outputs),
        json_mode=_JSON_MARKER in system,
    )


def _digest(*parts: str) -> int:
    return int.from_bytes(hashlib.sha256("\x1f".join(parts).encode()).digest()[:8], "big")


def _value(field: OutputField, seed: int) -> Any:
    """A deterministic value of the field's type (a JSON-ready Python value)."""
    t = field.type
    optional = re.match(r"^(?:Optional\[(.*)\]|Union\[(.*), NoneType\])$", t)
    if optional:
        t = optional[1] or optional[2]
    literal = _LITERAL.match(t)
    if literal:
        options = [o.strip().strip("'\"") for o in literal[1].split(",") if o.strip()]
        return options[seed % len(options)] if options else ""
    if t == "int":
        return seed % 4
    if t == "float":
        return round((seed % 101) / 100, 2)
    if t == "bool":
        return seed % 2 == 0
    if t.startswith(("list[", "tuple[", "set[")) or t in ("list", "tuple", "set"):
        return []
    if t.startswith("dict[") or t == "dict":
        return {}
    if field.name == "reasoning":
        return f"mock reasoning {seed % 10_000:04d}: the inputs were read."
    return f"mock {field.name} {seed % 10_000:04d}"


def _override(raw: str, json_mode: bool, field: OutputField) -> Any:
    if not json_mode or field.type == "str":
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def render_answer(prompt: DSPyPrompt, overrides: Mapping[str, str] | None = None) -> str:
    """The answer text for ``prompt``: ``[[ ## field ## ]]`` sections, or one JSON
    object in JSON mode. ``overrides`` maps a field name to the raw text to answer."""
    overrides = overrides or {}
    values: dict[str, Any] = {}
    for field in prompt.outputs:
        if field.name in overrides:
            values[field.name] = _override(overrides[field.name], prompt.json_mode, field)
        else:
            values[field.name] = _value(field, _digest(prompt.key, field.name))
    if prompt.json_mode:
        return json.dumps(values)
    parts = [f"[[ ## {name} ## ]]\n{_chat_text(value)}\n" for name, value in values.items()]
    return "\n".join([*parts, "[[ ## completed ## ]]"])


def _chat_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return str(value)
    return json.dumps(value)


class DSPyResponder:
    """A stateful responder for ``MockServerConfig(responder=DSPyResponder())``.

    Counts answers per item (its input values) to honour ``#dspy:unparseable=K``;
    ``answers(key)`` reads a count and ``reset()`` forgets them. Thread-safe: the
    server calls it from its own thread while a test reads the counts.
    """

    __slots__ = ("_answers", "_fallback", "_lock")

    def __init__(self, fallback: Responder = echo_responder) -> None:
        self._fallback = fallback
        self._answers: dict[str, int] = {}
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        with self._lock:
            return (
                f"<DSPyResponder items={len(self._answers)} answers={sum(self._answers.values())}>"
            )

    def __call__(self, body: dict[str, Any]) -> str:
        prompt = parse_dspy_prompt(body)
        if prompt is None:
            return self._fallback(body)
        directives: dict[str, str] = {}
        for value in prompt.inputs.values():
            directives.update((m[1], m[2]) for m in _DIRECTIVE.finditer(value))
        with self._lock:
            n = self._answers.get(prompt.key, 0) + 1
            self._answers[prompt.key] = n
        bad = directives.pop("unparseable", "0")
        if bad.isdigit() and n <= int(bad):
            return UNPARSEABLE_TEXT
        return render_answer(prompt, directives)

    def answers(self, inputs: Mapping[str, str] | Sequence[tuple[str, str]]) -> int:
        """How many answers were given for the item with these input values."""
        key = json.dumps(dict(inputs), sort_keys=True)
        with self._lock:
            return self._answers.get(key, 0)

    def reset(self) -> None:
        """Forget every per-item count."""
        with self._lock:
            self._answers.clear()
