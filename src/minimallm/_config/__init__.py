"""Configuration: the settings models (:mod:`.settings`) and the strict validation and
environment machinery behind them (:mod:`.base`)."""

from minimallm._config.settings import BatchConfig, MinimaLlmConfig

__all__ = ["BatchConfig", "MinimaLlmConfig"]
