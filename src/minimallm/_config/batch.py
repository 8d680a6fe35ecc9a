"""How a batch runs: :class:`BatchConfig` (items in progress, failure budget, progress
reports, token budget), also reachable as ``MinimaLlmConfig.batch``."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import Field

from minimallm._config.base import Settings, optional_int, render, warn_misspelt
from minimallm._errors import ConfigError

__all__ = ["BatchConfig"]


class BatchConfig(Settings):
    """How a batch runs: items in progress, failure budget, progress reports. Frozen."""

    num_workers: int = Field(default=64, ge=1, description="Items in progress at once.")
    max_failures: int | None = Field(default=25, ge=0, description="Abort past this; None: never.")
    heartbeat_s: float = Field(default=10.0, ge=0, description="Seconds between reports; 0: off.")
    stall_s: float = Field(default=300.0, gt=0, description="Seconds idle before a warning.")
    print_first_failures: int = Field(default=5, ge=0, description="Failures printed in full.")
    keep_failure_summaries: int = Field(default=20, ge=0, description="Failures kept for reports.")
    max_total_tokens: int | None = Field(
        default=None, ge=1, description="Stop once the answers used this many tokens; None: never."
    )

    _SPECS = {
        "num_workers": ("BATCH_NUM_WORKERS", int, "must be an integer >= 1"),
        "max_failures": (
            "BATCH_MAX_FAILURES",
            optional_int,
            "must be an integer >= 0, or none to never abort",
        ),
        "heartbeat_s": (
            "BATCH_HEARTBEAT_S",
            float,
            "must be a number >= 0 (seconds; 0 disables the heartbeat)",
        ),
        "stall_s": ("BATCH_STALL_S", float, "must be a number > 0 (seconds)"),
        "print_first_failures": ("BATCH_PRINT_FIRST_FAILURES", int, "must be an integer >= 0"),
        "keep_failure_summaries": ("BATCH_KEEP_FAILURE_SUMMARIES", int, "must be an integer >= 0"),
        "max_total_tokens": (
            "MAX_TOTAL_TOKENS",
            optional_int,
            "must be an integer >= 1 (tokens), or none for no budget",
        ),
    }
    _EMPTY_IS_NONE = frozenset({"max_failures"})

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Self:
        """Read only the ``BATCH_*`` variables (and ``MAX_TOTAL_TOKENS``) of ``env``
        (default: ``os.environ``).

        Unset variables keep their defaults. Raises one ConfigError naming every bad one.
        """
        env = os.environ if env is None else env
        warn_misspelt(env)
        instance, problems = cls._check_env(*cls._read_env(env))
        if instance is None:
            raise ConfigError(render(problems, cls._env_names()))
        return instance
