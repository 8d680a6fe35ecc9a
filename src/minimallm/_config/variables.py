"""Which environment variable feeds which :class:`~minimallm.MinimaLlmConfig` field,
how its text is parsed, and what the error says it must be (the ``BATCH_*`` ones are
:class:`~minimallm.BatchConfig`'s). A spec that is only a string names what a field
accepts when it is not read from the environment by this table."""

from __future__ import annotations

from typing import Any

from minimallm._config.base import comma_list, parse_bool

__all__ = ["MINIMALLM_VARIABLES"]

_SECONDS_GE0 = "must be a number >= 0 (seconds)"

MINIMALLM_VARIABLES: dict[str, Any] = {
    "base_url": (
        "OPENAI_BASE_URL",
        str,
        "must be a URL like http://localhost:8000/v1, or several separated by commas",
    ),
    "model": ("OPENAI_MODEL", str, "must be a non-empty string"),
    "max_outstanding": ("MAX_OUTSTANDING", int, "must be an integer >= 1"),
    "rpm": ("RPM", int, "must be an integer >= 0 (0 disables pacing)"),
    "tpm": ("TPM", int, "must be an integer >= 0 (0 disables the token budget)"),
    "timeout_s": ("TIMEOUT_S", float, "must be a number > 0 (seconds)"),
    "max_attempts": ("MAX_ATTEMPTS", int, "must be an integer >= 0 (0 retries until success)"),
    "base_backoff_s": ("BASE_BACKOFF_S", float, _SECONDS_GE0),
    "max_backoff_s": ("MAX_BACKOFF_S", float, _SECONDS_GE0),
    "jitter": ("JITTER", float, "must be a number between 0 and 1"),
    "cooldown_floor_s": ("COOLDOWN_FLOOR_S", float, _SECONDS_GE0),
    "cooldown_cap_s": ("COOLDOWN_CAP_S", float, _SECONDS_GE0),
    "cooldown_halflife_s": ("COOLDOWN_HALFLIFE_S", float, "must be a number > 0 (seconds)"),
    "retry_temperature_max": ("RETRY_TEMPERATURE_MAX", float, "must be a number >= 0"),
    "retry_temperature_halflife": (
        "RETRY_TEMPERATURE_HALFLIFE",
        float,
        "must be a number > 0 (re-asks)",
    ),
    "max_wait_s": ("MAX_WAIT_S", float, "must be a number > 0 (seconds)"),
    "compress_gzip": (
        "COMPRESS_GZIP",
        parse_bool,
        "must be true or false (1/0, yes/no, on/off)",
    ),
    "cache_dir": ("CACHE_DIR", str, "must be a directory path"),
    "ca_bundle": ("CA_BUNDLE", str, "must be a PEM file or a directory of CA certificates"),
    "tls_verify": ("TLS_VERIFY", parse_bool, "must be true or false (1/0, yes/no, on/off)"),
    "max_response_bytes": ("MAX_RESPONSE_BYTES", int, "must be an integer >= 1024 (bytes)"),
    "trust_env_proxy": (
        "TRUST_ENV_PROXY",
        parse_bool,
        "must be true or false (1/0, yes/no, on/off)",
    ),
    "force_refresh": (
        "CACHE_FORCE_REFRESH",
        parse_bool,
        "must be true or false (1/0, yes/no, on/off)",
    ),
    "cache_lookup_dirs": (
        "CACHE_LOOKUP_DIRS",
        comma_list,
        "must be a comma-separated list of cache directories",
    ),
    "model_synonyms": ("MODEL_SYNONYMS", comma_list, "must be a comma-separated list of names"),
}
