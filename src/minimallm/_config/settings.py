"""Configuration: :class:`MinimaLlmConfig` (and :class:`BatchConfig`, in :mod:`.batch`),
from code or the environment.

One set of defaults lives in the field definitions; ``from_env`` overrides only the
settings whose variable is set (empty counts as unset, except ``BATCH_MAX_FAILURES``
where empty, like ``none``, means "never abort"). Which variable feeds which field,
and what it accepts, is the ``MINIMALLM_VARIABLES`` table (:mod:`.variables`); the
README's Configuration table and ``minimallm config`` show them all with their
defaults. Units: seconds (``*_S``), per minute (``RPM``, ``TPM``).

Invalid settings raise one :class:`~minimallm.ConfigError` listing every problem, named
by environment variable (``from_env``) or by field (constructor), never showing the key.
Shared machinery (validation, the problems, the environment): :mod:`.base`; endpoint
URLs: :mod:`.urls`; how the key shows: :mod:`.key`.
"""

from __future__ import annotations

import os
import ssl
import warnings
from collections.abc import Iterator, Mapping
from typing import Any, Self

from pydantic import Field, PrivateAttr, SecretStr, ValidationInfo
from pydantic import field_validator as _validates

from minimallm._config.base import (
    Problem,
    Settings,
    at_least,
    comma_list,
    custom_error,
    header_problem,
    nested_error,
    render,
    warn_misspelt,
)
from minimallm._config.batch import BatchConfig
from minimallm._config.key import KEY_DROPPED, KeyShown
from minimallm._config.urls import api_base, url_problem
from minimallm._config.variables import MINIMALLM_VARIABLES
from minimallm._errors import ConfigError, ConfigWarning

__all__ = ["BatchConfig", "MinimaLlmConfig"]


class MinimaLlmConfig(Settings):
    """Everything a backend needs: endpoint, key, limits, retries, cooldown, cache.

    Build it in code (``MinimaLlmConfig(base_url=..., model=...)``) or with
    :meth:`from_env`; both share one set of defaults. Frozen: :meth:`with_changes`
    makes a validated copy (pydantic's ``model_copy(update=...)`` does not validate).

    The key is a ``SecretStr`` (a plain ``str`` is accepted; surrounding whitespace is
    stripped, and a key that cannot go in an HTTP header — a line break, a control or a
    non-ASCII character inside — is refused): it shows as ``***`` in repr, str and
    :meth:`describe`, never in error messages. :meth:`api_key_value` alone unwraps it.

    A *pickled* config carries no key (a pickle may end up in a log, a cache or another
    machine): it unpickles with ``api_key=None``, shown as ``api_key=None (dropped when
    pickled)``, and the first use of its key (building a backend's requests) warns
    (:class:`~minimallm.ConfigWarning`) that requests go without an Authorization
    header. Add the key back in the receiving process:
    ``cfg = cfg.with_changes(api_key=os.environ["OPENAI_API_KEY"])``.
    """

    base_url: str = Field(
        description="http(s)://host[:port][/path], /v1 optional; several endpoints of one "
        "model: a comma-separated string or a list."
    )
    model: str = Field(description="Model name sent with every request.")
    api_key: SecretStr | None = Field(default=None, description="Bearer key; None: no header.")
    batch: BatchConfig = Field(default=BatchConfig(), description="Frozen, so shared safely.")
    max_outstanding: int = Field(default=32, ge=1, description="HTTP requests in flight.")
    rpm: int = Field(default=600, ge=0, description="Requests per minute; 0: no pacing.")
    tpm: int = Field(
        default=0, ge=0, description="Tokens per minute (all endpoints); 0: no token budget."
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds for a whole attempt.")
    max_attempts: int = Field(default=6, ge=0, description="Per request; 0: until success.")
    base_backoff_s: float = Field(default=0.5, ge=0, description="Seconds before attempt 2.")
    max_backoff_s: float = Field(
        default=20.0, ge=0, validate_default=True, description="Backoff ceiling, seconds."
    )
    jitter: float = Field(default=0.2, ge=0, le=1, description="Backoff spread, 0.2 = +-20 %.")
    cooldown_floor_s: float = Field(default=0.0, ge=0, description="Least cooldown, seconds.")
    cooldown_cap_s: float = Field(
        default=30.0, ge=0, validate_default=True, description="Most cooldown, seconds."
    )
    cooldown_halflife_s: float = Field(default=20.0, gt=0, description="Decay, seconds.")
    retry_temperature_max: float = Field(
        default=0.5, ge=0, description="Re-ask temperature ceiling; 0: re-asks keep temperature."
    )
    retry_temperature_halflife: float = Field(
        default=5.0, gt=0, description="Re-asks to reach half of retry_temperature_max."
    )
    max_wait_s: float = Field(
        default=300.0, gt=0, description="Longest a request may be refused (429/503), seconds."
    )
    compress_gzip: bool = Field(default=False, description="Gzip request bodies.")
    cache_dir: str | None = Field(default=None, description="SQLite cache directory; None: off.")
    ca_bundle: str | None = Field(
        default=None, description="CA file or directory to trust; None: SSL_CERT_FILE or certifi."
    )
    tls_verify: bool = Field(default=True, description="False: no certificate check (warns).")
    max_response_bytes: int = Field(
        default=64 * 1024 * 1024, ge=1024, description="Largest answer body, bytes."
    )
    trust_env_proxy: bool = Field(default=True, description="Use HTTP(S)_PROXY etc.")
    # minima-llm 0.2.7's cache settings (src/minimallm/_cache/lookup.py)
    force_refresh: bool = Field(default=False, description="Never read the cache; still write.")
    cache_lookup_dirs: tuple[str, ...] = Field(
        default=(), description="Caches also read (never written); hits copied into cache_dir."
    )
    model_synonyms: tuple[str, ...] = Field(
        default=(), description="Model names whose cache entries count as this model's."
    )

    _SPECS = MINIMALLM_VARIABLES
    _REQUIREMENTS = {
        "api_key": "must be a string",
        "batch": "must be a BatchConfig or a dict of its fields",
    }
    _UNKNOWN_HINTS = {
        name: f"is a batch setting: pass batch=BatchConfig({name}=...)"
        for name in BatchConfig.model_fields
    }
    _ALSO_READ = frozenset({"OPENAI_API_KEY", "OPENAI_TOKEN", "OPENAI_API_BASE"})
    _key_dropped: bool = PrivateAttr(default=False)  # unpickled: the key stayed behind
    _key_warned: bool = PrivateAttr(default=False)

    @_validates("base_url", mode="before")
    @classmethod
    def _urls_to_str(cls, value: object) -> object:
        """Several endpoints of one model: a list (or tuple) becomes the comma string."""
        if isinstance(value, list | tuple) and all(isinstance(v, str) for v in value):
            return ",".join(value)
        return value

    @_validates("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        entries = [part.strip() for part in value.split(",")]
        for n, entry in enumerate(entries, 1):
            problem = url_problem(entry)
            if problem is not None:
                if len(entries) == 1:
                    raise custom_error(problem)
                raise custom_error(f"entry {n} ({entry!r}) {problem}")
        # the endpoint itself, as some providers document it: the API root is wanted
        checked = [
            entry.rstrip("/").removesuffix("/chat/completions").rstrip("/") for entry in entries
        ]
        if len(set(checked)) != len(checked):
            raise custom_error("names an endpoint twice; each must be listed once")
        return ",".join(checked)

    @_validates("model")
    @classmethod
    def _check_model(cls, value: str) -> str:
        if not value.strip():
            raise custom_error("must be a non-empty string")
        return value.strip()

    @_validates("api_key", mode="before")
    @classmethod
    def _blank_key_is_none(cls, value: object) -> object:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):  # a stray newline from `$(cat keyfile)` breaks headers
            key = value.strip()
            problem = header_problem(key)
            if problem is not None:
                raise custom_error(problem)
            return SecretStr(key) if key else None
        return value

    @_validates("batch", mode="before")
    @classmethod
    def _batch_from_mapping(cls, value: object) -> object:
        if isinstance(value, Mapping) and all(isinstance(k, str) for k in value):
            batch, problems = BatchConfig._attempt(value)
            if batch is None:
                raise nested_error(problems)
            return batch
        return value

    @_validates("cache_dir", mode="before")
    @classmethod
    def _path_to_str(cls, value: object) -> object:
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        return None if value == "" else value

    @_validates("ca_bundle", mode="before")
    @classmethod
    def _check_ca_bundle(cls, value: object) -> object:
        value = os.fspath(value) if isinstance(value, os.PathLike) else value
        if value == "" or not isinstance(value, str):
            return None if value == "" else value
        try:  # now, not at the first request: nothing is sent before the config is valid
            if os.path.isdir(value):
                ssl.create_default_context(capath=value)
            else:
                ssl.create_default_context(cafile=value)
        except (OSError, ssl.SSLError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
            raise custom_error(
                f"cannot be loaded ({reason}): must be a PEM file or a directory of CA certificates"
            ) from None
        return value

    @_validates("cache_lookup_dirs", "model_synonyms", mode="before")
    @classmethod
    def _names_to_tuple(cls, value: object) -> object:
        if isinstance(value, str):
            return comma_list(value)
        if isinstance(value, list | tuple):
            items = [os.fspath(v) if isinstance(v, os.PathLike) else v for v in value]
            if all(isinstance(v, str) for v in items):
                return tuple(v.strip() for v in items if v.strip())
        return value

    @_validates("cache_lookup_dirs")
    @classmethod
    def _check_lookup_dirs(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        if value and info.data.get("cache_dir") is None:
            raise custom_error("needs a cache_dir too (the cache that lookup hits are copied into)")
        missing = [d for d in value if not os.path.isfile(os.path.join(d, "minima_llm.db"))]
        if missing:
            raise custom_error(
                f"names {missing[0]!r}, which holds no minima_llm.db: each entry must be a "
                "directory holding a minimallm or minima-llm cache"
            )
        return value

    @_validates("max_backoff_s")
    @classmethod
    def _backoff_order(cls, value: float, info: ValidationInfo) -> float:
        return at_least(value, info, "base_backoff_s")

    @_validates("cooldown_cap_s")
    @classmethod
    def _cooldown_order(cls, value: float, info: ValidationInfo) -> float:
        return at_least(value, info, "cooldown_floor_s")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read every variable listed in the module docstring from ``env``.

        ``env`` defaults to ``os.environ``. The key comes from ``OPENAI_API_KEY``, else
        ``OPENAI_TOKEN`` (empty counts as unset); ``OPENAI_API_BASE`` (the openai SDK's
        old name) stands in for an unset ``OPENAI_BASE_URL``. Raises one ConfigError naming every
        bad or missing variable.
        """
        env = os.environ if env is None else env
        warn_misspelt(env)
        old_base = env.get("OPENAI_API_BASE", "").strip()  # the openai SDK's old name
        if old_base and not env.get("OPENAI_BASE_URL", "").strip():
            env = {**env, "OPENAI_BASE_URL": old_base}
        data, raws = cls._read_env(env)
        key_var = "OPENAI_API_KEY" if env.get("OPENAI_API_KEY", "").strip() else "OPENAI_TOKEN"
        key = env.get(key_var, "").strip()
        if key:
            data["api_key"] = key
        batch, problems = BatchConfig._check_env(*BatchConfig._read_env(env))
        if batch is not None:
            data["batch"] = batch
        instance, own = cls._check_env(data, raws)
        if instance is None or problems:
            names = {**cls._env_names(), **BatchConfig._env_names(), "api_key": key_var}
            raise ConfigError(render(own + problems, names))
        return instance

    def with_changes(self, **changes: Any) -> Self:
        """A new configuration with ``changes`` applied, validated like the constructor.

        Batch fields may be given directly (``with_changes(max_failures=10)``): they
        go into a new ``batch``. Raises one ConfigError naming every bad change.
        """
        batch_changes = {k: changes.pop(k) for k in list(changes) if k in BatchConfig.model_fields}
        batch = changes.get("batch", self.batch)
        problems: list[Problem] = []
        if batch_changes and isinstance(batch, BatchConfig):
            new_batch, problems = BatchConfig._attempt({**dict(batch), **batch_changes})
            changes["batch"] = new_batch or batch
        current = {name: getattr(self, name) for name in type(self).model_fields}
        instance, own = type(self)._attempt({**current, **changes})
        if instance is None or problems:
            raise ConfigError(render(own + problems, {}))
        if self._key_dropped and "api_key" not in changes:
            instance.__pydantic_private__["_key_dropped"] = True  # type: ignore[index]
        return instance

    def api_key_value(self) -> str | None:
        """The plain key, for the Authorization header only; None when no key is set
        (warning once if the key was dropped by pickling, see the class doc)."""
        if self.api_key is not None:
            return self.api_key.get_secret_value()
        if self._key_dropped and not self._key_warned:
            self.__pydantic_private__["_key_warned"] = True  # type: ignore[index]
            warnings.warn(KEY_DROPPED, ConfigWarning, stacklevel=2)
        return None

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Every endpoint of the model (one unless ``base_url`` lists several)."""
        return tuple(self.base_url.split(","))

    @property
    def api_base(self) -> str:
        """The API root, always ending in ``/v1`` (added when ``base_url`` lacks it); the
        first endpoint's when there are several."""
        return api_base(self.base_urls[0])

    @property
    def chat_completions_url(self) -> str:
        """Where chat completions are POSTed: ``<api_base>/chat/completions`` (the first
        endpoint's when there are several; see :attr:`chat_completions_urls`)."""
        return self.api_base + "/chat/completions"

    @property
    def chat_completions_urls(self) -> tuple[str, ...]:
        """Each endpoint's chat-completions URL, in the order of :attr:`base_urls`."""
        return tuple(api_base(url) + "/chat/completions" for url in self.base_urls)

    @property
    def models_url(self) -> str:
        """The model listing: ``<api_base>/models``."""
        return self.api_base + "/models"

    @property
    def num_workers(self) -> int:
        """Same as ``batch.num_workers`` (items in progress at once)."""
        return self.batch.num_workers

    @property
    def max_failures(self) -> int | None:
        """Same as ``batch.max_failures`` (None: never abort)."""
        return self.batch.max_failures

    @property
    def heartbeat_s(self) -> float:
        """Same as ``batch.heartbeat_s`` (seconds; 0: no heartbeat)."""
        return self.batch.heartbeat_s

    @property
    def stall_s(self) -> float:
        """Same as ``batch.stall_s`` (seconds without a completion before a warning)."""
        return self.batch.stall_s

    @property
    def print_first_failures(self) -> int:
        """Same as ``batch.print_first_failures``."""
        return self.batch.print_first_failures

    @property
    def keep_failure_summaries(self) -> int:
        """Same as ``batch.keep_failure_summaries``."""
        return self.batch.keep_failure_summaries

    @property
    def max_total_tokens(self) -> int | None:
        """Same as ``batch.max_total_tokens`` (None: no token budget)."""
        return self.batch.max_total_tokens

    def describe(self) -> str:
        """Every setting, one per line, for logs and a CLI; the key shown as ``***``."""
        lines = [f"MinimaLlmConfig (POST {self.chat_completions_url})"]
        for name in type(self).model_fields:
            if name == "api_key":
                lines.append(f"  api_key={KeyShown(self)!r}")
            elif name != "batch":
                lines.append(f"  {name}={getattr(self, name)}")
        lines += [
            f"  batch.{name}={getattr(self.batch, name)}" for name in BatchConfig.model_fields
        ]
        return "\n".join(lines)

    def __getstate__(self) -> dict[Any, Any]:
        """Pickle without the key (see the class docstring)."""
        state = super().__getstate__()
        state["__dict__"] = {**state["__dict__"], "api_key": None}
        state["__pydantic_fields_set__"] = state["__pydantic_fields_set__"] - {"api_key"}
        dropped = self.api_key is not None or self._key_dropped
        state["__pydantic_private__"] = {"_key_dropped": dropped, "_key_warned": False}
        return state

    def __eq__(self, other: object) -> bool:
        """Equal when every setting is (whether a key was dropped by a pickle is not
        a setting)."""
        if type(other) is not type(self):
            return NotImplemented
        return self.__dict__ == other.__dict__

    __hash__ = Settings.__hash__

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, (KeyShown(self) if name == "api_key" and value is None else value)
