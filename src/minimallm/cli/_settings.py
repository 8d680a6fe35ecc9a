"""Settings from flags over the environment, with the source of each one.

Every environment variable of :class:`~minimallm.MinimaLlmConfig` has a flag
(``RPM`` ↔ ``--rpm``). A flag beats its variable, which beats the default. Flags are
laid over a copy of the environment as text and the result goes through
``MinimaLlmConfig.from_env``, so a flag is parsed and validated exactly like its
variable, and an error names the flag the user typed (``--rpm=-5: must be ...``).

The API key has no flag on purpose: a key on a command line ends up in shell history
and in ``ps`` output. It comes from ``OPENAI_API_KEY``, else ``OPENAI_TOKEN``, and is
never shown, only whether it is set and by which variable.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from minimallm._config.settings import BatchConfig, MinimaLlmConfig
from minimallm._errors import ConfigError

__all__ = [
    "KEY_VARIABLES",
    "SETTINGS",
    "Resolved",
    "Setting",
    "add_settings_flags",
    "config_from_flags",
    "name_flags",
    "resolve",
    "shown",
]

OLD_BASE_URL = "OPENAI_API_BASE"
"""Read as ``OPENAI_BASE_URL`` when that is not set (openai < 1.0 used this name)."""

KEY_VARIABLES = ("OPENAI_API_KEY", "OPENAI_TOKEN")
"""Where the key is read from, in order of preference."""


@dataclass(frozen=True, slots=True)
class Setting:
    """One configurable setting: its field (``batch.`` prefix for BatchConfig), its
    environment variable, its flag, the flag's metavar and what it means."""

    field: str
    env: str
    flag: str
    metavar: str
    meaning: str

    @property
    def dest(self) -> str:
        """The argparse destination of the flag."""
        return "setting_" + self.field.replace(".", "_")

    @property
    def default(self) -> Any:
        """The field's default value (None for the required ones)."""
        model: Any = MinimaLlmConfig
        name = self.field
        if name.startswith("batch."):
            model, name = BatchConfig, name.removeprefix("batch.")
        info = model.model_fields[name]
        return None if info.is_required() else info.default


_S = Setting
# fmt: off
SETTINGS: tuple[Setting, ...] = (
    _S("base_url", "OPENAI_BASE_URL", "--base-url", "URL", "endpoint(s), /v1 optional: a[,b,...]"),
    _S("model", "OPENAI_MODEL", "--model", "NAME", "model name sent with every request"),
    _S("max_outstanding", "MAX_OUTSTANDING", "--max-outstanding", "N", "HTTP requests in flight"),
    _S("rpm", "RPM", "--rpm", "N", "requests per minute; 0: no pacing"),
    _S("tpm", "TPM", "--tpm", "N", "tokens per minute (all endpoints); 0: off"),
    _S("timeout_s", "TIMEOUT_S", "--timeout", "SECONDS", "one whole attempt"),
    _S("max_attempts", "MAX_ATTEMPTS", "--max-attempts", "N", "per request; 0: until success"),
    _S("base_backoff_s", "BASE_BACKOFF_S", "--base-backoff", "SECONDS", "wait before attempt 2"),
    _S("max_backoff_s", "MAX_BACKOFF_S", "--max-backoff", "SECONDS", "longest backoff"),
    _S("jitter", "JITTER", "--jitter", "F", "backoff spread (0.2: +-20 percent)"),
    _S("cooldown_floor_s", "COOLDOWN_FLOOR_S", "--cooldown-floor", "SECONDS", "least cooldown"),
    _S("cooldown_cap_s", "COOLDOWN_CAP_S", "--cooldown-cap", "SECONDS", "longest cooldown"),
    _S(
        "cooldown_halflife_s", "COOLDOWN_HALFLIFE_S", "--cooldown-halflife", "SECONDS",
        "how fast the memory of overload fades",
    ),
    _S(
        "retry_temperature_max", "RETRY_TEMPERATURE_MAX", "--retry-temperature-max", "F",
        "re-ask temperature ceiling (no temperature set); 0: off",
    ),
    _S(
        "retry_temperature_halflife", "RETRY_TEMPERATURE_HALFLIFE",
        "--retry-temperature-halflife", "N", "re-asks to reach half the ceiling",
    ),
    _S(
        "max_wait_s", "MAX_WAIT_S", "--max-wait", "SECONDS",
        "longest a request may be refused (429/503) before it fails",
    ),
    _S("compress_gzip", "COMPRESS_GZIP", "--gzip", "", "gzip request bodies"),
    _S("cache_dir", "CACHE_DIR", "--cache-dir", "DIR", "SQLite prompt cache; none: no cache"),
    _S("ca_bundle", "CA_BUNDLE", "--ca-bundle", "PATH", "CA certificates to trust (file or dir)"),
    _S("tls_verify", "TLS_VERIFY", "--tls-verify", "BOOL", "check certificates (0: no; loud)"),
    _S(
        "max_response_bytes", "MAX_RESPONSE_BYTES", "--max-response-bytes", "N",
        "largest answer accepted, decoded",
    ),
    _S(
        "trust_env_proxy", "TRUST_ENV_PROXY", "--trust-env-proxy", "BOOL",
        "use HTTP(S)_PROXY/ALL_PROXY/NO_PROXY",
    ),
    _S("force_refresh", "CACHE_FORCE_REFRESH", "--force-refresh", "", "never read the cache"),
    _S(
        "cache_lookup_dirs", "CACHE_LOOKUP_DIRS", "--cache-lookup-dirs", "DIR,...",
        "caches also read, never written; hits copied",
    ),
    _S(
        "model_synonyms", "MODEL_SYNONYMS", "--model-synonyms", "NAME,...",
        "models whose cache entries count as this one's",
    ),
    _S("batch.num_workers", "BATCH_NUM_WORKERS", "--workers", "N", "items in progress at once"),
    _S(
        "batch.max_failures", "BATCH_MAX_FAILURES", "--max-failures", "N",
        "abort after more failures; 'none': never",
    ),
    _S(
        "batch.heartbeat_s", "BATCH_HEARTBEAT_S", "--heartbeat", "SECONDS",
        "between progress reports; 0: off",
    ),
    _S(
        "batch.stall_s", "BATCH_STALL_S", "--stall", "SECONDS",
        "warn after this long without a finished item",
    ),
    _S(
        "batch.print_first_failures", "BATCH_PRINT_FIRST_FAILURES", "--print-first-failures",
        "N", "failures printed in full",
    ),
    _S(
        "batch.keep_failure_summaries", "BATCH_KEEP_FAILURE_SUMMARIES",
        "--keep-failure-summaries", "N", "failures listed in an abort message",
    ),
    _S(
        "batch.max_total_tokens", "MAX_TOTAL_TOKENS", "--max-total-tokens", "N",
        "stop the batch once its answers used this many tokens",
    ),
)
# fmt: on
"""Every setting read from the environment, in display order."""

_BY_ENV = {s.env: s for s in SETTINGS}
_REQUIRED = frozenset({"base_url", "model"})
_EMPTY_MEANS_NONE = frozenset({"BATCH_MAX_FAILURES"})  # as in MinimaLlmConfig.from_env


def shown(value: object) -> str:
    """A setting's value as the help and ``minimallm config`` print it."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value) if value else "none"
    return f"{value:g}" if isinstance(value, float) else str(value)


def add_settings_flags(parser: argparse.ArgumentParser) -> None:
    """Add a flag per setting (group "endpoint and limits"); defaults show in the help."""
    group = parser.add_argument_group(
        "endpoint and limits",
        "each flag overrides its environment variable (shown in brackets); "
        "the key comes from OPENAI_API_KEY or OPENAI_TOKEN only",
    )
    for s in SETTINGS:
        default = "required" if s.field in _REQUIRED else f"default {shown(s.default)}"
        text = f"{s.meaning} [{s.env}; {default}]"
        if s.field == "compress_gzip":
            gzip = group.add_mutually_exclusive_group()
            gzip.add_argument("--gzip", dest=s.dest, action="store_const", const="1", help=text)
            gzip.add_argument(
                "--no-gzip", dest=s.dest, action="store_const", const="0",
                help="plain request bodies, even if COMPRESS_GZIP is set",
            )  # fmt: skip
        elif s.field == "force_refresh":
            group.add_argument(
                s.flag, dest=s.dest, action="store_const", const="1", help=text
            )  # fmt: skip
        elif s.field == "cache_dir":
            cache = group.add_mutually_exclusive_group()
            cache.add_argument(s.flag, dest=s.dest, metavar=s.metavar, help=text)
            cache.add_argument(
                "--no-cache", dest=s.dest, action="store_const", const="",
                help="no prompt cache, even if CACHE_DIR is set",
            )  # fmt: skip
        else:
            group.add_argument(s.flag, dest=s.dest, metavar=s.metavar, help=text)


@dataclass(frozen=True, slots=True)
class Resolved:
    """The settings after flags are laid over the environment.

    ``env``: the variables ``MinimaLlmConfig.from_env`` reads (flags applied);
    ``sources``: setting field -> where its value comes from (``"flag --rpm"``,
    ``"env RPM"``, ``"default"``, or a fallback's source); ``written``: field -> the
    text as given, for settings not left at their default; ``flags``: variable -> the
    flag that set it; ``key_from``: the variable the key comes from (None: no key);
    ``key_note``: what else to know about the key variables. Never holds the key
    itself outside ``env``, which is only handed to ``MinimaLlmConfig.from_env``.
    """

    env: Mapping[str, str]
    sources: Mapping[str, str]
    written: Mapping[str, str]
    flags: Mapping[str, str]
    key_from: str | None
    key_note: str


def _key_source(env: Mapping[str, str]) -> tuple[str | None, str]:
    given = [name for name in KEY_VARIABLES if env.get(name, "").strip()]
    blank = [name for name in KEY_VARIABLES if name in env and not env[name].strip()]
    if not given:
        empty = f"{' and '.join(blank)} empty: " if blank else ""
        return None, empty + "requests carry no Authorization header"
    if len(given) == 2:
        return given[0], "OPENAI_TOKEN is set too, and ignored"
    return given[0], f"{blank[0]} is empty" if blank else ""


def resolve(
    ns: argparse.Namespace,
    env: Mapping[str, str],
    *,
    fallbacks: Mapping[str, tuple[str, str]] | None = None,
) -> Resolved:
    """Lay the settings flags of ``ns`` over ``env``.

    ``fallbacks`` maps a variable to ``(value, source)`` used when neither a flag nor
    the environment sets it (e.g. the model named by every line of an input file).
    """
    merged = dict(env)
    sources: dict[str, str] = {}
    written: dict[str, str] = {}
    flags: dict[str, str] = {}
    old_base = env.get(OLD_BASE_URL, "").strip()
    if old_base and not env.get("OPENAI_BASE_URL", "").strip():
        merged["OPENAI_BASE_URL"] = old_base  # the openai SDK's old name, read as the new
    for s in SETTINGS:
        given = getattr(ns, s.dest, None)
        raw = merged.get(s.env) if s.env == "OPENAI_BASE_URL" else env.get(s.env)
        if given is not None:
            merged[s.env] = given
            flags[s.env] = _flag_name(s, given)
            sources[s.field] = f"flag {flags[s.env]}"
            written[s.field] = given
        elif raw is not None and (raw.strip() or s.env in _EMPTY_MEANS_NONE):
            old = s.env == "OPENAI_BASE_URL" and not env.get(s.env, "").strip()
            sources[s.field] = (
                f"env {OLD_BASE_URL} (the openai SDK's old name)" if old else f"env {s.env}"
            )
            written[s.field] = raw.strip()
        elif fallbacks and s.env in fallbacks:
            value, source = fallbacks[s.env]
            merged[s.env] = value
            sources[s.field] = source
            written[s.field] = value
        else:
            sources[s.field] = (
                "not set" if s.default is None and s.field in _REQUIRED else "default"
            )
    return Resolved(merged, sources, written, flags, *_key_source(env))


def _flag_name(s: Setting, given: str) -> str:
    if s.field == "compress_gzip":
        return "--gzip" if given == "1" else "--no-gzip"
    if s.field == "cache_dir" and given == "":
        return "--no-cache"
    return s.flag


def config_from_flags(resolved: Resolved) -> MinimaLlmConfig:
    """Build the configuration; a ConfigError names each bad flag as typed (``--rpm=-5``)
    and each bad or missing variable, with the flag that could set it."""
    try:
        return MinimaLlmConfig.from_env(resolved.env)
    except ConfigError as exc:
        raise ConfigError(_rename(str(exc), resolved.flags)) from None


def name_flags(message: str, flags: Mapping[str, str]) -> str:
    """``message`` with each variable set by a flag named as that flag (an abort
    saying "check OPENAI_BASE_URL" says "check --base-url" when the flag was used)."""
    for var, flag in flags.items():
        message = re.sub(rf"\b{var}\b", flag, message)
    return message


def _rename(message: str, flags: Mapping[str, str]) -> str:
    lines = message.splitlines()
    out = lines[:1]
    for line in lines[1:]:
        if line.rstrip().endswith("required, not set"):
            line = re.sub(
                r"\b[A-Z][A-Z_]+\b",
                lambda m: f"{m[0]} (or {_BY_ENV[m[0]].flag})" if m[0] in _BY_ENV else m[0],
                line,
            )
        else:
            for var, flag in flags.items():
                line = re.sub(rf"\b{var}\b", flag, line)
        out.append(line)
    return "\n".join(out)
