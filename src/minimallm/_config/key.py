"""How a configuration shows its API key (never the key itself), and what a config
that lost its key in a pickle says when it is used."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minimallm._config.settings import MinimaLlmConfig

__all__ = ["KEY_DROPPED", "KeyShown"]


class KeyShown:
    """How a config shows its key: ``None``, ``None (dropped when pickled)``, ``***``."""

    __slots__ = ("_text",)

    def __init__(self, cfg: MinimaLlmConfig) -> None:
        if cfg.api_key is not None:
            self._text = "*** (set)"
        else:
            self._text = "None (dropped when pickled)" if cfg._key_dropped else "None"

    def __repr__(self) -> str:
        return self._text


KEY_DROPPED = (
    "this MinimaLlmConfig was unpickled, and pickling drops the API key: requests go "
    "without an Authorization header. Add the key back in this process, e.g. "
    'cfg = cfg.with_changes(api_key=os.environ["OPENAI_API_KEY"]), or build the '
    "config here with MinimaLlmConfig.from_env()"
)
