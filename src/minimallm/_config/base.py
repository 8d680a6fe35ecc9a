"""The machinery behind the configuration models: strict validation, one error, the environment.

:class:`Settings` is the frozen pydantic base of :class:`~minimallm.BatchConfig` and
:class:`~minimallm.MinimaLlmConfig`. It turns every validation failure into
:class:`Problem` values, one per setting, and :func:`render` lists them all in one
:class:`~minimallm.ConfigError`, named by field (constructor) or by environment variable
(``from_env``), never echoing the key. Each subclass declares which variable feeds which
field (``_SPECS``); :meth:`Settings._read_env` parses them and
:meth:`Settings._check_env` reports each bad value as written.

The models themselves, their defaults and the list of variables live in
:mod:`minimallm._config.settings`.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, NoReturn, Self

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo
from pydantic_core import PydanticCustomError

from minimallm._errors import ConfigError, ConfigWarning

__all__ = [
    "Problem",
    "Settings",
    "at_least",
    "comma_list",
    "custom_error",
    "header_problem",
    "known_variables",
    "likely_meant",
    "nested_error",
    "optional_int",
    "parse_bool",
    "render",
    "warn_misspelt",
]

_CUSTOM = "minimallm_config"  # error type of our own checks; ctx carries the reason
_SECRET_FIELDS = frozenset({"api_key"})
_BOOLS = {"1": True, "true": True, "yes": True, "on": True}
_BOOLS |= {"0": False, "false": False, "no": False, "off": False}


class Problem(NamedTuple):
    """One bad setting, named by field; :func:`render` renames it for the environment."""

    field: str
    reason: str  # may contain "{other}": the display name of ``other``
    shown: str | None = None  # the offending value as displayed; None: not shown
    other: str | None = None
    missing: bool = False


def render(problems: Iterable[Problem], names: Mapping[str, str]) -> str:
    """The ConfigError message: a count, then one line per problem (``names`` renames fields)."""
    problems = list(problems)
    missing = [names.get(p.field, p.field) for p in problems if p.missing]
    lines = [f"{', '.join(missing)}: required, not set"] if missing else []
    for p in problems:
        if not p.missing:
            reason = p.reason.replace("{other}", names.get(p.other or "", p.other or ""))
            name = names.get(p.field, p.field)
            lines.append(name + ("" if p.shown is None else f"={p.shown}") + f": {reason}")
    noun = "problem" if len(lines) == 1 else "problems"
    head = f"Invalid minimallm configuration ({len(lines)} {noun}):"
    return "\n".join([head, *(f"  {line}" for line in lines)])


_URL_USERINFO = r"(?i)\b([a-z][a-z0-9+.-]*://)[^/@\s]*@"  # compiled on first use (re's cache)


def _show(value: object) -> str:
    if isinstance(value, str):  # never show a password written into a URL
        value = re.sub(_URL_USERINFO, r"\1***@", value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _show_raw(raw: str) -> str:
    """An environment value as written: numbers bare (``RPM=-5``), text quoted."""
    try:
        float(raw)
    except ValueError:
        return _show(raw)
    return raw


def custom_error(reason: str, other: str | None = None) -> PydanticCustomError:
    """A validator's own failure; ``reason`` may name the field ``other`` as ``{other}``."""
    return PydanticCustomError(_CUSTOM, "{reason}", {"reason": reason, "other": other})


def nested_error(problems: list[Problem]) -> PydanticCustomError:
    """Carry a nested model's problems (already named by its fields) through pydantic."""
    return PydanticCustomError(_CUSTOM, "invalid", {"nested": problems})


def at_least(value: float, info: ValidationInfo, other: str) -> float:
    """``value`` unchanged if it is at least the already validated field ``other``."""
    bound = info.data.get(other)
    if isinstance(bound, float) and value < bound:
        raise custom_error(f"must be a number >= {{other}} ({bound:g})", other)
    return value


def optional_int(raw: str) -> int | None:
    """Parse an integer variable where empty or ``none`` means None."""
    return None if raw.lower() in ("", "none") else int(raw)


def comma_list(raw: str) -> tuple[str, ...]:
    """Parse a comma-separated list; blanks around and between entries are dropped."""
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def parse_bool(raw: str) -> bool:
    """Parse 1/0, true/false, yes/no, on/off (any case); ValueError otherwise."""
    if raw.lower() not in _BOOLS:
        raise ValueError(raw)
    return _BOOLS[raw.lower()]


def header_problem(value: str) -> str | None:
    """Why ``value`` cannot go in an HTTP header as a key, never quoting it; None if
    it can. (A newline, a control or a non-ASCII character failed every request.)"""
    if value.isascii() and value.isprintable() and " " not in value:
        return None
    for position, ch in enumerate(value, 1):
        if "!" <= ch <= "~":
            continue
        if ch in "\r\n":
            kind = "a line break"
        elif ch == " ":
            kind = "a space"
        elif ch == "\t":
            kind = "a tab"
        elif ch < " " or ch == "\x7f":
            kind = "a control character"
        else:
            kind = "a non-ASCII character"
        return (
            "must contain only printable ASCII characters without spaces (it is sent in "
            f"an HTTP header); found {kind} at position {position}"
        )
    return None


_Spec = tuple[str, Callable[[str], object], str]  # (env variable, parser, what is allowed)


class Settings(BaseModel):
    """Shared machinery: strict validation, one ConfigError, environment reading."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        strict=True,  # no True for an int, no "5" from code: env text is parsed by us
        allow_inf_nan=False,
        hide_input_in_errors=True,  # pydantic's own messages must never echo a key
    )
    _SPECS: ClassVar[Mapping[str, _Spec]] = {}  # field -> spec, for every env-read field
    _REQUIREMENTS: ClassVar[Mapping[str, str]] = {}  # fields not read from the env
    _EMPTY_IS_NONE: ClassVar[frozenset[str]] = frozenset()
    _UNKNOWN_HINTS: ClassVar[Mapping[str, str]] = {}
    _ALSO_READ: ClassVar[frozenset[str]] = frozenset()  # variables read outside _SPECS

    def _fill(self, data: Mapping[str, Any]) -> list[Problem]:
        try:  # BaseModel.__init__ directly: validates into self, no recursion into ours
            BaseModel.__init__(self, **data)
        except ValidationError as exc:
            errors = exc.errors()
        else:
            return []
        return self._problems(errors)  # outside `except`: no chained error holding inputs

    def _settings_init(self, /, **data: Any) -> None:
        problems = self._fill(data)
        if problems:
            raise ConfigError(render(problems, {}))

    if not TYPE_CHECKING:  # type checkers keep pydantic's field-typed signature
        __init__ = _settings_init

    def __setattr__(self, name: str, value: object) -> NoReturn:
        raise AttributeError(
            f"{type(self).__name__} is immutable: build a new one with with_changes({name}=...)"
        )

    def __delattr__(self, name: str) -> NoReturn:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @classmethod
    def _problems(cls, errors: Iterable[Any]) -> list[Problem]:
        problems: list[Problem] = []
        seen: set[str] = set()
        for err in errors:
            field = str(err["loc"][0]) if err["loc"] else ""
            if field in seen:  # one line per setting
                continue
            seen.add(field)
            if err["type"] == "missing":  # its input is the whole input, key included
                problems.append(Problem(field, "required, not set", missing=True))
                continue
            if err["type"] == "extra_forbidden":  # value never shown: maybe a misnamed key
                problems.append(Problem(field, cls._unknown(field)))
                continue
            shown = "<hidden>" if field in _SECRET_FIELDS else _show(err["input"])
            ctx = err.get("ctx", {})
            if err["type"] == _CUSTOM and "nested" in ctx:
                nested: list[Problem] = ctx["nested"]
                problems += [p._replace(field=f"{field}.{p.field}") for p in nested]
            elif err["type"] == _CUSTOM:
                problems.append(Problem(field, ctx["reason"], shown, ctx["other"]))
            else:
                reason = cls._requirement(field, err["msg"])
                if err["type"] == "finite_number":
                    reason = reason.replace("a number", "a finite number")
                problems.append(Problem(field, reason, shown))
        return problems

    @classmethod
    def _requirement(cls, field: str, default: str) -> str:
        spec = cls._SPECS.get(field)
        return spec[2] if spec else cls._REQUIREMENTS.get(field, default)

    @classmethod
    def _unknown(cls, field: str) -> str:
        if field in cls._UNKNOWN_HINTS:
            return cls._UNKNOWN_HINTS[field]
        import difflib  # only for an unknown setting or a variable no setting reads

        close = difflib.get_close_matches(field, list(cls.model_fields), n=1)
        return "unknown setting" + (f" (did you mean {close[0]}?)" if close else "")

    @classmethod
    def _env_names(cls) -> dict[str, str]:
        return {field: spec[0] for field, spec in cls._SPECS.items()}

    @classmethod
    def _attempt(cls, data: Mapping[str, Any]) -> tuple[Self | None, list[Problem]]:
        instance = cls.__new__(cls)
        problems = instance._fill(data)
        return (None if problems else instance), problems

    @classmethod
    def _read_env(cls, env: Mapping[str, str]) -> tuple[dict[str, object], dict[str, str]]:
        """Parse this class's variables: (values, texts as written), by field.

        A text its parser refuses is left out of the values: validation then reports
        it as missing or falls back to a default, and :meth:`_check_env` replaces
        that by the real problem.
        """
        data: dict[str, object] = {}
        raws: dict[str, str] = {}
        for field, (var, parse, _) in cls._SPECS.items():
            raw = env.get(var, "").strip()
            if not raw and not (field in cls._EMPTY_IS_NONE and var in env):
                continue
            raws[field] = raw
            try:
                data[field] = parse(raw)
            except ValueError:
                continue
        return data, raws

    @classmethod
    def _check_env(
        cls, data: Mapping[str, object], raws: Mapping[str, str]
    ) -> tuple[Self | None, list[Problem]]:
        """Validate parsed values; problems show each value as written, not as parsed."""
        unparsed = [f for f in raws if f not in data]
        problems = [Problem(f, cls._SPECS[f][2], _show_raw(raws[f])) for f in unparsed]
        instance, more = cls._attempt(data)
        for p in more:
            if p.field in unparsed or p.other in unparsed:  # not what the user wrote
                continue
            problems.append(p._replace(shown=_show_raw(raws[p.field])) if p.field in raws else p)
        return (instance if not problems else None), problems

    def with_changes(self, **changes: Any) -> Self:
        """A new configuration with ``changes`` applied, validated like the constructor.

        Use this rather than pydantic's ``model_copy(update=...)``, which skips
        validation. Raises one ConfigError naming every bad change.
        """
        current = {name: getattr(self, name) for name in type(self).model_fields}
        return type(self)(**{**current, **changes})


# -- misspelt environment variables -----------------------------------------------------

_OTHER_TOOLS = frozenset(
    {"ALL_PROXY", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_DIR", "SSL_CERT_FILE"}
)
"""Well-known variables of other tools that are never a misspelt minimallm setting."""

_warned_variables: set[str] = set()  # once per process per variable


def known_variables() -> frozenset[str]:
    """Every environment variable any configuration model reads: the ``_SPECS`` (and
    ``_ALSO_READ``) of every :class:`Settings` subclass, so a new setting is known
    here as soon as it is declared."""
    names: set[str] = set()
    classes: list[type[Settings]] = [Settings]
    while classes:
        cls = classes.pop()
        classes.extend(cls.__subclasses__())
        names.update(spec[0] for spec in cls._SPECS.values())
        names.update(cls._ALSO_READ)
    return frozenset(names)


def likely_meant(name: str, known: Collection[str], env: Collection[str]) -> str | None:
    """The minimallm variable ``name`` is probably a misspelling of, or None.

    Only a variable that is not set itself, shares the first word of ``name``
    (``BATCH_``, ``MAX_``, ``OPENAI_`` …) and is close to it (difflib ratio >= 0.85,
    or equal but for case) counts: unrelated variables of other tools stay quiet.
    """
    upper = name.upper()
    if name in known or upper in _OTHER_TOOLS:
        return None
    head = upper.partition("_")[0]
    candidates = [k for k in known if k not in env and k.partition("_")[0] == head]
    if upper in candidates:
        return upper
    if not candidates:
        return None
    import difflib  # here: a from_env whose variables share no first word with ours skips it

    close = difflib.get_close_matches(upper, candidates, n=1, cutoff=0.85)
    return close[0] if close else None


def warn_misspelt(env: Mapping[str, str]) -> None:
    """Warn (:class:`~minimallm.ConfigWarning`, once per process per variable) about
    each variable of ``env`` that looks like a misspelt minimallm setting; values are
    never shown."""
    known = known_variables()
    for name in env:
        if name in _warned_variables:
            continue
        meant = likely_meant(name, known, env)
        if meant is not None:
            _warned_variables.add(name)
            warnings.warn(
                f"{name} is not a minimallm setting (ignored); did you mean {meant}?",
                ConfigWarning,
                stacklevel=3,
            )
